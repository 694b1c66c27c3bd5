import NodusCore

/// Where a sigma-based scheduler is in its schedule: diffusers' `_step_index`,
/// `_begin_index`, `_init_step_index` and `index_for_timestep`, shared by Euler,
/// Euler ancestral, Heun, LMS, DPM-Solver, UniPC and LCM.
///
/// Matches diffusers 0.42.1: the first `step` (or `scale_model_input`) after
/// `set_timesteps` starts at the begin index when one was set, otherwise at the
/// timestep's place in the schedule (its second occurrence when it appears more
/// than once, as after img2img's cut); each step then advances by one.
///
/// Limitations: none known.
struct StepCursor: Sendable {
    /// The index of the next step; nil until the first step after `setTimesteps`.
    var stepIndex: Int?
    /// `set_begin_index`; nil: found from the first timestep.
    var beginIndex: Int?

    /// Forgets the position (`set_timesteps`).
    mutating func reset() {
        stepIndex = nil
        beginIndex = nil
    }

    /// The schedule index the next step (or model-input scaling) uses.
    /// - Parameter lastWhenMissing: DPM-Solver and UniPC take the last index for a
    ///   timestep that is not in the schedule; the others fail.
    /// - Throws: `NodusError.invalidArgument` for a timestep not in the schedule.
    func index(for timestep: Double, in timesteps: [Double], lastWhenMissing: Bool = false,
               className: String) throws -> Int {
        if let stepIndex { return stepIndex }
        if let beginIndex { return beginIndex }
        let matches = timesteps.indices.filter { Float(timesteps[$0]) == Float(timestep) }
        guard let first = matches.first else {
            if lastWhenMissing && !timesteps.isEmpty { return timesteps.count - 1 }
            throw NodusError.invalidArgument("\(className): timestep \(timestep) is not in the current schedule")
        }
        return matches.count > 1 ? matches[1] : first
    }

    /// `index(for:in:className:)` for the schedulers that step from `sigmas[i]` to `sigmas[i + 1]`
    /// (Euler, Euler ancestral, Heun, LMS).
    /// - Throws: also when the schedule is exhausted (no next sigma).
    func sigmaIndex(for timestep: Double, in timesteps: [Double], sigmaCount: Int, className: String) throws -> Int {
        let index = try index(for: timestep, in: timesteps, className: className)
        guard index + 1 < sigmaCount else {
            throw NodusError.invalidArgument(
                "\(className).step: the schedule of \(timesteps.count) entries is exhausted; call setTimesteps again")
        }
        return index
    }
}
