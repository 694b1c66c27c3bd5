import FuzzSupport
import NodusFormats

/// libFuzzer target: a LoRA file in each naming (diffusers / PEFT, kohya), with diffusers'
/// `lora_adapter_metadata`; or, for a two-part input, a PEFT adapter folder
/// (`adapter_config.json`, then `adapter_model.safetensors`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLoRA(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let parts = input.parts
        let path: String
        if parts.count >= 2 {
            ScratchFolder.write(parts[0], to: "peft/adapter_config.json")
            ScratchFolder.write(parts[1], to: "peft/adapter_model.safetensors")
            path = ScratchFolder.path + "/peft"
        } else {
            path = ScratchFolder.write(input.bytes, to: "lora.safetensors")
        }
        let file = try LoRAFile.load(path: path, access: .read)
        for layer in file.layers {
            guard layer.scale.isFinite, layer.down.shape.count == 2, layer.up.shape.count == 2,
                  layer.down.shape[0] == layer.rank, layer.up.shape[1] == layer.rank else {
                fatalError("LoRAFile accepted layer '\(layer.module)' with rank \(layer.rank), scale \(layer.scale), A \(layer.down.shape), B \(layer.up.shape)")
            }
        }
    }
}
