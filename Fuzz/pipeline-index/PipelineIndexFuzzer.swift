import FuzzSupport
import NodusPipelines

/// libFuzzer target: a diffusers pipeline folder's `model_index.json`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPipelineIndex(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        ScratchFolder.write(input.bytes, to: "pipeline/model_index.json")
        _ = try PipelineFolder(directory: ScratchFolder.path + "/pipeline")
    }
}
