import FuzzSupport
import NodusFormats

/// libFuzzer target: a NumPy `.npy` file (preamble, header dict, data size).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNumpy(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let path = ScratchFolder.write(input.bytes, to: "array.npy")
        _ = try NumpyArray.read(path: path).floatArray()
    }
}
