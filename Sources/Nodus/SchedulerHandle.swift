import NodusCore
import NodusPipelines

/// What a `nodus_scheduler *` points to: a scheduler and its timestep state.
final class SchedulerHandle: OpaqueHandle {
    static let typeName = "nodus_scheduler"
    let callLock = HandleLock()

    var scheduler: any Scheduler

    init(scheduler: any Scheduler) { self.scheduler = scheduler }
}
