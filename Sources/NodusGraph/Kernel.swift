/// One step of an executable plan: an operation bound to its buffers. Built
/// once per plan, so running it does no lookup and no allocation.
public protocol Kernel {
    /// The operation's name, for plans and profiles.
    var name: String { get }
    /// Floats of shared scratch memory `run` may use.
    var scratchCount: Int { get }
    func run(scratch: UnsafeMutablePointer<Float>)
}

extension Kernel {
    public var scratchCount: Int { 0 }
}
