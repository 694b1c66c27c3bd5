import FuzzSupport
import NodusCore
import NodusFormats

/// libFuzzer target: a `.safetensors` file (header length, JSON header, metadata, data layout),
/// each tensor read as float32 as the model loaders do. A second part, when present, is a sharded
/// folder's `diffusion_pytorch_model.safetensors.index.json` whose shard is the first part
/// (`shard.safetensors`).
///
/// Beyond "no crash", every tensor SafetensorsFile accepts must lie inside the file's data area.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let parts = input.parts
        if parts.count >= 2 {
            ScratchFolder.write(parts[0], to: "sharded/shard.safetensors")
            ScratchFolder.write(parts[1], to: "sharded/diffusion_pytorch_model.safetensors.index.json")
            let store = try WeightStore(directory: ScratchFolder.path + "/sharded")
            for name in store.names { _ = try store.float32(name) }
            return
        }
        let path = ScratchFolder.write(input.bytes, to: "model.safetensors")
        let file = try SafetensorsFile(path: path, access: .read)
        for name in file.names {
            guard let entry = file.entry(name) else { fatalError("'\(name)' is listed but has no entry") }
            guard entry.byteRange.lowerBound >= file.dataOffset, entry.byteRange.upperBound <= file.mapping.byteCount,
                  entry.byteRange.count == entry.elementCount * entry.dtype.byteSize else {
                fatalError("tensor '\(name)' \(entry) lies outside the data area of a \(file.mapping.byteCount)-byte file")
            }
        }
        let store = try WeightStore(file: path)
        for name in store.names where store.entry(name)?.dtype.isFloatingPoint == true {
            _ = try store.float32(name).floatArray()
        }
    }
}
