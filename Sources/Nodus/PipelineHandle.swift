import NodusPipelines

/// What a `nodus_pipeline *` points to.
final class PipelineHandle {
    let pipeline: StableDiffusionPipeline

    init(pipeline: StableDiffusionPipeline) { self.pipeline = pipeline }

    /// A new retained opaque pointer to `self` (released by `nodus_pipeline_free`).
    func retainedPointer() -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }

    /// The handle behind `pointer`, which must come from `retainedPointer()`.
    static func from(_ pointer: OpaquePointer) -> PipelineHandle {
        Unmanaged<PipelineHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
