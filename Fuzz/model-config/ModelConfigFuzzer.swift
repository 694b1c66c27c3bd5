import FuzzSupport
import NodusFormats
import NodusModels

/// libFuzzer target: a model folder's `config.json`, read as each config type Nodus builds
/// models from (DiT, UNet, VAE, MedSyn2's 3D DiT, CLIP text with and without projection).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzModelConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let config = try JSONValue.parse(input.bytes, context: "config.json")
        let reader = try JSONObjectReader(config, context: "config.json")
        _ = try? DiTConfig(reader)
        _ = try? UNetConfig(reader)
        _ = try? AutoencoderKLConfig(reader)
        _ = try? MedSyn2Config(reader)
        _ = try? CLIPTextConfig(reader, withProjection: false)
        _ = try CLIPTextConfig(reader, withProjection: true)
    }
}
