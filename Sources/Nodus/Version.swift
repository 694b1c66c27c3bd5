import CNodus

/// The library's version; must match `NODUS_VERSION_STRING` / `NODUS_VERSION_NUMBER`
/// in include/nodus.h (the C example abi_check and the Python binding check it).
enum Version {
    static let major: Int32 = 0
    static let minor: Int32 = 1
    static let patch: Int32 = 0
    /// X*1000000 + Y*1000 + Z.
    static let number: Int32 = major * 1_000_000 + minor * 1_000 + patch
    // Immutable after initialisation; safe to share between threads.
    nonisolated(unsafe) static let string = StaticCString.make("\(major).\(minor).\(patch)")
}

/// `int32_t nodus_version_number(void)`: X*1000000 + Y*1000 + Z of the loaded library.
@_cdecl("nodus_version_number")
public func nodusVersionNumber() -> Int32 {
    Version.number
}

/// `const char *nodus_version(void)`: "X.Y.Z", a static string.
@_cdecl("nodus_version")
public func nodusVersion() -> UnsafePointer<CChar> {
    Version.string
}
