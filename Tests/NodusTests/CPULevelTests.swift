import Foundation
import XCTest
@testable import NodusCore

/// The CPU level agrees with /proc/cpuinfo and with NODUS_CPU (make test runs
/// the suites again at each lower level).
final class CPULevelTests: XCTestCase {
    private var cpuFlags: Set<Substring> {
        let line = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        return Set(line.split(separator: " "))
    }

    func testSupportedLevelMatchesCPUInfo() {
        let flags = cpuFlags
        let expected: CPULevel
        if !flags.contains("avx2") || !flags.contains("fma") {
            expected = .baseline
        } else if !flags.contains("avx512f") {
            expected = .avx2
        } else {
            expected = flags.contains("avx512_bf16") ? .avx512BFloat16 : .avx512
        }
        XCTAssertEqual(CPULevel.supported, expected, "flags: \(flags.filter { $0.hasPrefix("avx") }.sorted())")
    }

    func testOverrideLowersButNeverRaises() {
        let requested = ProcessInfo.processInfo.environment["NODUS_CPU"].flatMap(CPULevel.init(name:))
        let expected = requested.map { min($0, CPULevel.supported) } ?? CPULevel.supported
        XCTAssertEqual(CPULevel.inUse, expected, "NODUS_CPU=\(requested?.name ?? "unset")")
        if let requested, requested > CPULevel.supported {
            XCTAssertNotNil(CPULevel.overrideProblem, "asking for \(requested.name) must say why it is not used")
        }
    }

    func testNamesRoundTrip() {
        XCTAssertEqual(CPULevel.allCases.map(\.name), ["baseline", "avx2", "avx512", "avx512_bf16"])
        for level in CPULevel.allCases { XCTAssertEqual(CPULevel(name: level.name), level) }
        XCTAssertNil(CPULevel(name: "sse2"))
    }
}
