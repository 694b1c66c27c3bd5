import CNodusMedical

/// Calls a `nodus_medical_*` function and turns its -1 and message into a `CLIError`.
enum MedicalCall {
    static func check(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
        var message = [CChar](repeating: 0, count: 1024)
        let status = message.withUnsafeMutableBufferPointer { buffer in body(buffer.baseAddress!, buffer.count) }
        guard status == 0 else {
            throw CLIError.failure(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
}
