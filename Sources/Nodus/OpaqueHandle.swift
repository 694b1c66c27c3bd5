import NodusCore

/// What every `nodus_*` handle is: a Swift object handed to C as an opaque
/// pointer, retained while the host holds it. Its type is checked on every
/// use, so a handle of one kind passed where another is expected (a scheduler
/// as a model) is an error, not a crash.
protocol OpaqueHandle: AnyObject {
    /// The C type's name, for messages ("nodus_model").
    static var typeName: String { get }
    /// Held by each entry point that uses the handle, for the whole call.
    var callLock: HandleLock { get }
}

extension OpaqueHandle {
    /// A new retained opaque pointer to `self` (released by the type's `nodus_*_free`).
    func retainedPointer() -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }

    /// The handle behind `pointer`, or nil when it is NULL or a handle of another kind
    /// (the last error then says which).
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

    /// `nodus_*_free`: releases the host's reference; NULL is a no-op, and a handle of
    /// another kind is left alone (with a last error).
    static func release(_ pointer: OpaquePointer?, in function: String) {
        guard pointer != nil, lookup(pointer, "handle", in: function) != nil, let pointer else { return }
        Unmanaged<Self>.fromOpaque(UnsafeRawPointer(pointer)).release()
    }
}

extension Argument {
    /// The handle of type `Handle` behind `pointer`.
    /// - Throws: `invalidArgument` naming the parameter when it is NULL or a handle of another kind.
    static func handle<Handle: OpaqueHandle>(_ pointer: OpaquePointer?, _ kind: Handle.Type, _ parameter: String,
                                             in function: String) throws -> Handle {
        let pointer = try required(pointer, parameter, in: function)
        let object = Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
        guard let handle = object as? Handle else {
            let found = (object as? any OpaqueHandle).map { " (it is a \(type(of: $0).typeName))" } ?? ""
            throw NodusError.invalidArgument("\(function): `\(parameter)` is not a \(Handle.typeName)\(found)")
        }
        HeldHandleLocks.current?.hold(handle.callLock)
        return handle
    }
}
