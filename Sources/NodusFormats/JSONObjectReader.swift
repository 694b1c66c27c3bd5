import NodusCore
/// Reads typed fields of a JSON object (a config.json, a scheduler config) with
/// defaults, and errors that name the file and the field.
public struct JSONObjectReader: Sendable {
    public let members: [String: JSONValue]
    /// Where the object came from, for messages ("config.json of 'model/'").
    public let context: String

    public init(_ value: JSONValue, context: String) throws {
        guard let members = value.objectValue else {
            throw NodusError.format("\(context) is not a JSON object")
        }
        self.members = members
        self.context = context
    }

    public func has(_ key: String) -> Bool {
        if let value = members[key], !value.isNull { return true }
        return false
    }

    private func missing(_ key: String) -> NodusError {
        NodusError.format("\(context): required field '\(key)' is missing")
    }

    private func wrongType(_ key: String, _ expected: String) -> NodusError {
        NodusError.format("\(context): field '\(key)' must be \(expected), found \(members[key].map { $0.serialized() } ?? "nothing")")
    }

    public func int(_ key: String) throws -> Int {
        guard let value = members[key], !value.isNull else { throw missing(key) }
        guard let number = value.intValue else { throw wrongType(key, "an integer") }
        return number
    }

    public func int(_ key: String, default fallback: Int) throws -> Int {
        has(key) ? try int(key) : fallback
    }

    public func optionalInt(_ key: String) throws -> Int? {
        has(key) ? try int(key) : nil
    }

    public func double(_ key: String) throws -> Double {
        guard let value = members[key], !value.isNull else { throw missing(key) }
        guard let number = value.doubleValue else { throw wrongType(key, "a number") }
        return number
    }

    public func double(_ key: String, default fallback: Double) throws -> Double {
        has(key) ? try double(key) : fallback
    }

    public func optionalDouble(_ key: String) throws -> Double? {
        has(key) ? try double(key) : nil
    }

    public func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard has(key) else { return fallback }
        guard let flag = members[key]?.boolValue else { throw wrongType(key, "true or false") }
        return flag
    }

    public func string(_ key: String) throws -> String {
        guard let value = members[key], !value.isNull else { throw missing(key) }
        guard let text = value.stringValue else { throw wrongType(key, "a string") }
        return text
    }

    public func string(_ key: String, default fallback: String) throws -> String {
        has(key) ? try string(key) : fallback
    }

    public func optionalString(_ key: String) throws -> String? {
        has(key) ? try string(key) : nil
    }

    /// A string field restricted to `allowed` values.
    public func choice(_ key: String, default fallback: String, allowed: [String]) throws -> String {
        let value = try string(key, default: fallback)
        guard allowed.contains(value) else {
            throw NodusError.unsupported("\(context): '\(key)' = '\(value)' is not supported (expected one of \(allowed.joined(separator: ", ")))")
        }
        return value
    }

    public func intArray(_ key: String) throws -> [Int] {
        guard let value = members[key], !value.isNull else { throw missing(key) }
        guard let items = value.arrayValue else { throw wrongType(key, "an array of integers") }
        return try items.map { item in
            guard let number = item.intValue else { throw wrongType(key, "an array of integers") }
            return number
        }
    }

    public func optionalDoubleArray(_ key: String) throws -> [Double]? {
        guard has(key) else { return nil }
        guard let items = members[key]?.arrayValue else { throw wrongType(key, "an array of numbers") }
        return try items.map { item in
            guard let number = item.doubleValue else { throw wrongType(key, "an array of numbers") }
            return number
        }
    }

    public func stringArray(_ key: String) throws -> [String] {
        guard let value = members[key], !value.isNull else { throw missing(key) }
        guard let items = value.arrayValue else { throw wrongType(key, "an array of strings") }
        return try items.map { item in
            guard let text = item.stringValue else { throw wrongType(key, "an array of strings") }
            return text
        }
    }
}
