import CNodusKernels

/// Fusing LoRA updates into weights: `W' = W + sum_i f_i B_i A_i` with
/// B_i [rows, r_i] and A_i [r_i, columns], as PEFT's merge computes it.
///
/// * At the AVX2 level and up (`singlePass`), one pass (`nodus_low_rank_merge_rows`, C)
///   reads each element of W once and writes W' once, summing `B_i A_i` in
///   registers: the merge costs about one streaming copy of the weights. The
///   work is split into blocks of rows: each thread takes its own run of them
///   (so first writes of fresh memory fault on different pages), then helps
///   the others finish.
/// * Elsewhere, W is copied and OpenBLAS adds each term (GEMM with beta 1),
///   block by block, so a block is still in the last-level cache for its GEMM.
public enum LowRankMerge {
    public typealias Term = (down: UnsafePointer<Float>, up: UnsafePointer<Float>, rank: Int, factor: Float)

    /// One weight to merge: target = weight + the terms, in order. `target` may
    /// be `weight` (in place); otherwise they must not overlap.
    public struct Job {
        public var weight: UnsafePointer<Float>
        public var target: UnsafeMutablePointer<Float>
        public var rows: Int
        public var columns: Int
        public var terms: [Term]

        public init(weight: UnsafePointer<Float>, target: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
                    terms: [Term]) {
            (self.weight, self.target, self.rows, self.columns, self.terms) = (weight, target, rows, columns, terms)
        }
    }

    /// Whether this CPU runs the single-pass kernel.
    public static let hasSinglePassKernel = nodus_low_rank_merge_supported() != 0

    /// Rows per block of the single pass: a multiple of the kernel's 8-row (AVX-512) and 4-row (AVX2) tiles,
    /// about 30 us of work for a 1152-wide rank-32 weight.
    private static let blockRows = 64

    /// Runs every job. `singlePass: false` forces the copy + GEMM path (tests);
    /// true is ignored below the AVX2 level. `blockBytes` sizes the copy +
    /// GEMM blocks.
    public static func merge(_ jobs: [Job], singlePass: Bool = hasSinglePassKernel, blockBytes: Int = 8 << 20) {
        if singlePass && hasSinglePassKernel {
            mergeSinglePass(jobs)
        } else {
            for job in jobs { mergeByGemm(job, blockBytes: blockBytes) }
        }
    }

    private static func mergeSinglePass(_ jobs: [Job]) {
        // Blocks of every job in one list, so threads never wait at the end of a weight.
        var blocks: [(job: Int, firstRow: Int)] = []
        for (index, job) in jobs.enumerated() {
            blocks += stride(from: 0, to: job.rows, by: blockRows).map { (index, $0) }
        }
        let terms = jobs.map { job in
            job.terms.map { nodus_low_rank_term(down: $0.down, up: $0.up, rank: Int64($0.rank), factor: $0.factor) }
        }
        Parallel.forEachBalanced(blocks.count) { block in
            let (index, firstRow) = blocks[block]
            let job = jobs[index]
            terms[index].withUnsafeBufferPointer { terms in
                _ = nodus_low_rank_merge_rows(job.weight, job.target, Int64(job.columns), terms.baseAddress,
                                              Int64(terms.count), Int64(firstRow),
                                              Int64(min(firstRow + blockRows, job.rows)))
            }
        }
    }

    /// Copy + GEMM in blocks of about `blockBytes` of target.
    private static func mergeByGemm(_ job: Job, blockBytes: Int) {
        let columns = job.columns
        let blockRows = max(1, blockBytes / max(columns * 4, 1))
        var start = 0
        while start < job.rows {
            let count = min(blockRows, job.rows - start)
            if job.target != UnsafeMutablePointer(mutating: job.weight) {
                (job.target + start * columns).update(from: job.weight + start * columns, count: count * columns)
            }
            for term in job.terms where term.rank > 0 {
                Gemm.multiply(transposeA: false, transposeB: false, m: count, n: columns, k: term.rank,
                              alpha: term.factor, a: term.up + start * term.rank, lda: term.rank, b: term.down,
                              ldb: columns, beta: 1, c: job.target + start * columns, ldc: columns)
            }
            start += count
        }
    }
}
