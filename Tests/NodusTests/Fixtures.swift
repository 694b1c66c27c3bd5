#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NodusCore
import XCTest

/// Locates files under `Tests/Fixtures` (made by the scripts in `tests/reference`).
enum Fixtures {
    static let directory: String = {
        var components = #filePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        components.removeLast(2)  // NodusTests/Fixtures.swift
        return components.joined(separator: "/") + "/Fixtures"
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
}

extension XCTestCase {
    /// A fresh temporary directory for this test's own files, removed with everything in it
    /// when the test ends.
    func temporaryDirectory(_ label: String) -> String {
        let path = "/tmp/nodus-tests-\(label)-\(UInt64.random(in: 0...UInt64.max))"
        _ = path.withCString { mkdir($0, 0o755) }
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}
