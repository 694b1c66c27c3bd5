import NodusPipelines

/// What a `nodus_pipeline *` points to.
final class PipelineHandle: OpaqueHandle {
    static let typeName = "nodus_pipeline"
    let callLock = HandleLock()

    let pipeline: StableDiffusionPipeline

    init(pipeline: StableDiffusionPipeline) { self.pipeline = pipeline }
}
