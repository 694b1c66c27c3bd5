#if canImport(Glibc)
import Glibc
#endif

/// Progress on standard error: a redrawn bar on a terminal, otherwise a plain line
/// about every 10% (so logs stay readable); elapsed time and the remaining time
/// estimated from the mean so far.
final class ProgressBar {
    private let label: String
    private let isTerminal = StandardStream.errorIsTerminal
    private let start = ProgressBar.now()
    private var lastPrintedPercent = -1

    init(label: String) { self.label = label }

    func update(done: Int, total: Int) {
        guard total > 0 else { return }
        let fraction = Double(min(max(done, 0), total)) / Double(total)
        let elapsed = ProgressBar.now() - start
        var timing = String(format1: elapsed) + " s"
        if done > 0 && done < total {
            timing += ", ETA " + String(format1: elapsed / Double(done) * Double(total - done)) + " s"
        }
        if isTerminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            StandardStream.error("\r\(label) [\(bar)] \(done)/\(total) \(timing)" + (done >= total ? "\n" : ""))
        } else {
            let percent = Int(fraction * 100)
            if percent / 10 > lastPrintedPercent / 10 || done >= total {
                lastPrintedPercent = percent
                StandardStream.error("\(label): \(done)/\(total) (\(percent)%) \(timing)\n")
            }
        }
    }

    private static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

extension String {
    /// `value` with one decimal.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
