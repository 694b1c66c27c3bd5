import NodusCore

/// What every `nodus_*` handle is: a Swift object handed to C as an opaque
/// value from the `HandleTable`, which holds it until the host frees it. Every
/// use looks the value up: NULL, a freed handle (a use after free, a double
/// free), a value the library never gave out, and a handle of another kind (a
/// scheduler passed as a model) are errors naming the parameter, never crashes.
protocol OpaqueHandle: AnyObject {
    /// The C type's name, for messages ("nodus_model").
    static var typeName: String { get }
    /// Held by each entry point that uses the handle, for the whole call.
    var callLock: HandleLock { get }
}

extension OpaqueHandle {
    /// A new handle on `self`, held by the handle table until the type's `nodus_*_free`.
    func retainedPointer() -> OpaquePointer {
        HandleTable.shared.insert(self)
    }

    /// The handle behind `pointer`, or nil when it is NULL, freed, unknown or a handle of
    /// another kind (the last error then says which).
    static func lookup(_ pointer: OpaquePointer?, _ parameter: String, in function: String) -> Self? {
        do {
            return try Argument.handle(pointer, Self.self, parameter, in: function)
        } catch let error as NodusError {
            LastError.set(error.message)
        } catch {
            LastError.set("\(function): \(error)")
        }
        return nil
    }

    /// `nodus_*_free`: frees the host's handle; NULL is a no-op. A handle freed before (a
    /// double free), a value the library never gave out and a handle of another kind are
    /// left alone, with a last error.
    static func release(_ pointer: OpaquePointer?, in function: String) {
        guard let pointer else { return }
        let parameter = String(typeName.dropFirst("nodus_".count))
        let entry = HandleTable.shared.remove(pointer, if: { $0 is Self })
        do {
            _ = try Argument.handle(entry, Self.self, parameter, in: function)
        } catch let error as NodusError {
            LastError.set(error.message)
        } catch {
            LastError.set("\(function): \(error)")
        }
    }
}

extension Argument {
    /// The handle of type `Handle` behind `pointer`, locked for the rest of the entry point.
    /// - Throws: `invalidArgument` naming the parameter when it is NULL, freed, not a handle,
    ///   or a handle of another kind.
    static func handle<Handle: OpaqueHandle>(_ pointer: OpaquePointer?, _ kind: Handle.Type, _ parameter: String,
                                             in function: String) throws -> Handle {
        let pointer = try required(pointer, parameter, in: function)
        let handle = try Self.handle(HandleTable.shared.lookup(pointer), kind, parameter, in: function)
        HeldHandleLocks.current?.hold(handle.callLock)
        return handle
    }

    /// The handle of type `Handle` a table entry holds.
    fileprivate static func handle<Handle: OpaqueHandle>(_ entry: HandleTable.Entry, _ kind: Handle.Type,
                                                         _ parameter: String, in function: String) throws -> Handle {
        let object: AnyObject
        switch entry {
        case .live(let found):
            object = found
        case .freed:
            throw NodusError.invalidArgument(
                "\(function): `\(parameter)` is a freed handle (used after its nodus_*_free, or freed twice)")
        case .unknown:
            throw NodusError.invalidArgument("\(function): `\(parameter)` is not a handle this library gave out")
        }
        guard let handle = object as? Handle else {
            let found = (object as? any OpaqueHandle).map { " (it is a \(type(of: $0).typeName))" } ?? ""
            throw NodusError.invalidArgument("\(function): `\(parameter)` is not a \(Handle.typeName)\(found)")
        }
        return handle
    }
}
