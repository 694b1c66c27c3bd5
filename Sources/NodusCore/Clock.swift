#if canImport(Glibc)
import Glibc
#endif

/// Monotonic time for profiles and benchmarks.
public enum Clock {
    public static func seconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }
}
