/// One step of an executable plan: an operation bound to its buffers. Built
/// once per plan, so running it does no lookup and no allocation.
public protocol Kernel {
    /// The operation's name, for plans and profiles.
    var name: String { get }
    /// Floats of shared scratch memory `run` may use.
    var scratchCount: Int { get }
    /// Floating-point operations of one run, 2 per multiply-add, for profiles;
    /// counted for the products (Linear, convolution, attention, LoRA side
    /// paths) and 0 for the steps that only move or normalise data.
    var flops: Int { get }
    func run(scratch: UnsafeMutablePointer<Float>)
}

extension Kernel {
    public var scratchCount: Int { 0 }
    public var flops: Int { 0 }
}
