import CNodus
import NodusCore

/// The `nodus_cpu_*` and `nodus_isa_level_*` functions: which kernels run.
enum CPULevelNames {
    // Immutable after initialisation; safe to share between threads.
    nonisolated(unsafe) static let table = StaticCString.table(CPULevel.allCases.map(\.name))
    nonisolated(unsafe) static let note: UnsafePointer<CChar> = StaticCString.make(CPULevel.overrideProblem ?? "")
}

/// `nodus_isa_level nodus_cpu_level(void)`.
@_cdecl("nodus_cpu_level")
public func nodusCPULevel() -> nodus_isa_level { CPULevel.inUse.rawValue }

/// `nodus_isa_level nodus_cpu_level_supported(void)`.
@_cdecl("nodus_cpu_level_supported")
public func nodusCPULevelSupported() -> nodus_isa_level { CPULevel.supported.rawValue }

/// `const char *nodus_cpu_level_note(void)`: why NODUS_CPU was not honoured, or "".
@_cdecl("nodus_cpu_level_note")
public func nodusCPULevelNote() -> UnsafePointer<CChar> { CPULevelNames.note }

/// `const char *nodus_isa_level_name(nodus_isa_level)`: "avx2", ...; NULL for an unknown value.
@_cdecl("nodus_isa_level_name")
public func nodusISALevelName(_ level: nodus_isa_level) -> UnsafePointer<CChar>? {
    StaticCString.lookup(CPULevelNames.table, level)
}

/// `nodus_status nodus_isa_level_from_name(const char *, nodus_isa_level *)`.
@_cdecl("nodus_isa_level_from_name")
public func nodusISALevelFromName(_ name: UnsafePointer<CChar>?, _ outLevel: UnsafeMutablePointer<nodus_isa_level>?)
    -> nodus_status
{
    Status.run("nodus_isa_level_from_name") {
        let function = "nodus_isa_level_from_name"
        let text = try Argument.string(name, "name", in: function)
        let target = try Argument.required(outLevel, "out_level", in: function)
        guard let level = CPULevel(name: text) else {
            let known = CPULevel.allCases.map(\.name).joined(separator: ", ")
            throw NodusError.invalidArgument("\(function): unknown CPU level '\(text)' (known: \(known))")
        }
        target.pointee = level.rawValue
    }
}
