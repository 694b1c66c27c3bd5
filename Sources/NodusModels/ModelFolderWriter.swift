#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Writes a diffusers model folder (`save_pretrained` layout).
enum ModelFolderWriter {
    static func write(config: JSONValue, weights: Weights, to directory: String) throws {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw NodusError.io("cannot create '\(directory)': \(String(cString: strerror(errno)))")
        }
        let configPath = directory + "/config.json"
        let text = config.serialized()
        guard let file = fopen(configPath, "w") else {
            throw NodusError.io("cannot write '\(configPath)': \(String(cString: strerror(errno)))")
        }
        let written = fputs(text, file)
        guard fclose(file) == 0, written >= 0 else { throw NodusError.io("cannot write '\(configPath)'") }
        try SafetensorsWriter.write(try weights.current(), metadata: ["format": "pt"],
                                    to: directory + "/diffusion_pytorch_model.safetensors")
    }
}
