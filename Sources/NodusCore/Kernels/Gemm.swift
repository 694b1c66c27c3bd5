import CBLAS
import CNodusKernels

/// Matrix products on row-major float32 matrices: `PackedGemm` at the AVX2
/// level and above, else OpenBLAS.
public enum Gemm {
    /// `output[m, n] = sum_k input[m, k] * weight[n, k] (+ bias[n])`: a PyTorch
    /// `Linear` with its [out, in] weight, over `rows` rows. `packedWeight`, from
    /// `packLinearWeight` of the same weight, saves packing it on every call.
    /// `weightIsTransposed`: the weight is stored [in, out] (an ONNX MatMul's).
    /// `activation`, when given, is applied to the output as it is stored.
    public static func linear(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, weightIsTransposed: Bool = false,
                              packedWeight: UnsafePointer<Float>? = nil, bias: UnsafePointer<Float>?,
                              activation: LinearActivation? = nil, output: UnsafeMutablePointer<Float>, rows: Int,
                              inFeatures: Int, outFeatures: Int) {
        if PackedGemm.isSupported {
            var problem = PackedGemm.problem(m: rows, n: outFeatures, k: inFeatures,
                                             a: PackedGemm.matrix(input, rowStride: inFeatures, columnStride: 1),
                                             c: output, ldc: outFeatures)
            problem.b = linearWeightMatrix(weight, inFeatures: inFeatures, outFeatures: outFeatures,
                                           transposed: weightIsTransposed)
            (problem.packed_b, problem.column_bias) = (packedWeight, bias)
            problem.activation = activation?.kernelActivation ?? NODUS_GEMM_ACTIVATION_NONE
            PackedGemm.run(problem)
            return
        }
        defer { activation?.apply(output, count: rows * outFeatures) }
        var beta: Float = 0
        if let bias {
            // Start from the bias so the GEMM adds onto it (beta = 1): no second pass.
            Parallel.forEach(rows, costPerItem: outFeatures) { range in
                for row in range {
                    (output + row * outFeatures).update(from: bias, count: outFeatures)
                }
            }
            beta = 1
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, weightIsTransposed ? CblasNoTrans : CblasTrans, Int32(rows),
                    Int32(outFeatures), Int32(inFeatures), 1, input, Int32(inFeatures), weight,
                    Int32(weightIsTransposed ? outFeatures : inFeatures), beta, output, Int32(outFeatures))
    }

    /// Floats a Linear weight [out, in] takes packed for `linear`, or nil on CPUs
    /// where products do not use packed weights.
    public static func packedLinearWeightCount(outFeatures: Int, inFeatures: Int) -> Int? {
        PackedGemm.packedCount(k: inFeatures, n: outFeatures)
    }

    /// Packs a Linear weight once for `linear`, into `packedLinearWeightCount` floats.
    public static func packLinearWeight(_ weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int,
                                        weightIsTransposed: Bool = false, into target: UnsafeMutablePointer<Float>) {
        PackedGemm.pack(b: linearWeightMatrix(weight, inFeatures: inFeatures, outFeatures: outFeatures,
                                              transposed: weightIsTransposed),
                        k: inFeatures, n: outFeatures, into: target)
    }

    /// B[k, n] = weight[n, k] (a [out, in] weight read transposed, as packing reads it anyway),
    /// or weight[k, n] for a weight stored [in, out].
    private static func linearWeightMatrix(_ weight: UnsafePointer<Float>, inFeatures: Int, outFeatures: Int,
                                           transposed: Bool) -> nodus_gemm_matrix {
        transposed ? PackedGemm.matrix(weight, rowStride: outFeatures, columnStride: 1)
                   : PackedGemm.matrix(weight, rowStride: 1, columnStride: inFeatures)
    }

    /// General `C = alpha * op(A) * op(B) + beta * C` with leading dimensions.
    public static func multiply(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                                a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if (beta == 0 || beta == 1) && PackedGemm.isSupported {
            var problem = PackedGemm.problem(m: m, n: n, k: k,
                                             a: transposeA ? PackedGemm.matrix(a, rowStride: 1, columnStride: lda)
                                                           : PackedGemm.matrix(a, rowStride: lda, columnStride: 1),
                                             c: c, ldc: ldc)
            problem.b = transposeB ? PackedGemm.matrix(b, rowStride: 1, columnStride: ldb)
                                   : PackedGemm.matrix(b, rowStride: ldb, columnStride: 1)
            (problem.scale, problem.accumulate) = (alpha, beta == 1 ? 1 : 0)
            PackedGemm.run(problem)
            return
        }
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
