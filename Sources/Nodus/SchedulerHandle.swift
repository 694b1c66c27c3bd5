import NodusCore
import NodusPipelines

/// What a `nodus_scheduler *` points to: a scheduler and its timestep state.
final class SchedulerHandle {
    var scheduler: any Scheduler

    init(scheduler: any Scheduler) { self.scheduler = scheduler }

    /// A new retained opaque pointer to `self` (released by `nodus_scheduler_free`).
    func retainedPointer() -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }

    /// The handle behind `pointer`, which must come from `retainedPointer()`.
    static func from(_ pointer: OpaquePointer) -> SchedulerHandle {
        Unmanaged<SchedulerHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
