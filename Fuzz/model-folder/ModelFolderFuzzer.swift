import FuzzSupport
import NodusCore
import NodusFormats
import NodusModels

/// libFuzzer target: a model folder whose `config.json` is the input and whose weights are the
/// tiny test model of the class it names (Tests/Fixtures), loaded and, when its inputs are small,
/// run once on zeros. Sizes a config gives (sample size, channels, layers, heads) reach the model
/// builders here, against weights that were made for other sizes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzModelFolder(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let config = try JSONValue.parse(input.bytes, context: "config.json")
        let className = config["_class_name"]?.stringValue ?? config["architectures"]?.arrayValue?.first?.stringValue
        guard let className, let fixture = fixtures[className] else { return }
        let folder = "model-" + fixture.folder.split(separator: "/").joined(separator: "-")
        ScratchFolder.link(folder + "/" + fixture.weights, to: fixturesPath + "/" + fixture.folder + "/" + fixture.weights)
        ScratchFolder.write(input.bytes, to: folder + "/config.json")
        let model = try ModelLoader.load(path: ScratchFolder.path + "/" + folder, options: ModelOptions(threads: 1))
        var inputs: [String: Tensor] = [:]
        var elements = 0
        for signature in model.inputSignatures {
            let shape = (signature.shape ?? [1]).map { $0 ?? 1 }
            elements += shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            guard elements <= 1 << 16 else { return }
            inputs[signature.name] = try Tensor(zeros: shape, dtype: signature.dtype)
        }
        let shape = try model.outputShape(for: inputs)
        guard (try? Tensor.elementCount(of: shape)) ?? .max <= 1 << 20 else { return }
        _ = try model.forward(inputs).floatArray()
    }
}

/// The tiny model of each class: its folder in Tests/Fixtures and its weights file.
private let fixtures: [String: (folder: String, weights: String)] = [
    "DiTTransformer2DModel": ("dit-tiny", "diffusion_pytorch_model.safetensors"),
    "UNet2DConditionModel": ("unet-tiny", "diffusion_pytorch_model.safetensors"),
    "AutoencoderKL": ("vae-tiny", "diffusion_pytorch_model.safetensors"),
    "CLIPTextModel": ("clip-tiny", "model.safetensors"),
    "CLIPTextModelWithProjection": ("clip-tiny-projection", "model.safetensors"),
    "MedSyn2Transformer3DModel": ("volume/medsyn2-tiny", "diffusion_pytorch_model.safetensors"),
]

private let fixturesPath: String = {
    var components = #filePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    components.removeLast(3)  // Fuzz/model-folder/ModelFolderFuzzer.swift
    return components.joined(separator: "/") + "/Tests/Fixtures"
}()
