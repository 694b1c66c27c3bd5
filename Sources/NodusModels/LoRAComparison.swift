import NodusCore
import NodusFormats

/// How two adapters' updates of one Linear relate: whether two characteristic
/// LoRAs interfere. With dW = s B A for each adapter (their weights are not
/// applied), `interference` is ||dW_a dW_b^T||_F and `cosine` the cosine of
/// the flattened updates. Both come from rank-sized products, never the
/// [out, in] matrices: <dW_a, dW_b> = s_a s_b tr((B_a^T B_b)(A_b A_a^T)) and
/// ||B_a M B_b^T||_F^2 = tr(M^T (B_a^T B_a) M (B_b^T B_b)) with M = A_a A_b^T.
public struct LoRALayerComparison: Sendable {
    public var module: String
    public var interference: Double
    public var cosine: Double
    public var normA: Double
    public var normB: Double

    public var json: JSONValue {
        .object(["module": .string(module), "interference": .number(interference), "cosine": .number(cosine),
                 "norm_a": .number(normA), "norm_b": .number(normB)])
    }

    /// Compares the summed updates of two adapters on one Linear.
    static func compare(module: String, _ a: [LowRankUpdate], _ b: [LowRankUpdate]) -> LoRALayerComparison {
        let inner = frobeniusInner(a, b)
        let normA = frobeniusInner(a, a).squareRoot(), normB = frobeniusInner(b, b).squareRoot()
        // ||dW_a dW_b^T||_F^2 summed over the parts of each side.
        var squared = 0.0
        for x in a { for y in a { for u in b { for v in b {
            squared += x.scale * y.scale * u.scale * v.scale * traceOfProducts(x, y, u, v)
        } } } }
        let cosine = normA > 0 && normB > 0 ? inner / (normA * normB) : 0
        return LoRALayerComparison(module: module, interference: max(squared, 0).squareRoot(), cosine: cosine,
                                   normA: normA, normB: normB)
    }

    /// sum over parts of <s_x B_x A_x, s_y B_y A_y>_F.
    private static func frobeniusInner(_ a: [LowRankUpdate], _ b: [LowRankUpdate]) -> Double {
        var total = 0.0
        for x in a {
            for y in b {
                // tr((B_x^T B_y)(A_y A_x^T))
                let bb = LowRankUpdate.product(x.up, transposeLeft: true, y.up, transposeRight: false)
                let aa = LowRankUpdate.product(y.down, transposeLeft: false, x.down, transposeRight: true)
                total += x.scale * y.scale * trace(bb, aa)
            }
        }
        return total
    }

    /// tr((dW_x dW_u^T)^T (dW_y dW_v^T)) for unit scales:
    /// tr(B_u A_u A_x^T B_x^T B_y A_y A_v^T B_v^T) = tr(M_xu^T G_xy M_yv H_vu)
    /// with M_xu = A_x A_u^T, G_xy = B_x^T B_y, M_yv = A_y A_v^T, H_vu = B_v^T B_u.
    private static func traceOfProducts(_ x: LowRankUpdate, _ y: LowRankUpdate, _ u: LowRankUpdate,
                                        _ v: LowRankUpdate) -> Double {
        let mxu = LowRankUpdate.product(x.down, transposeLeft: false, u.down, transposeRight: true)  // [rx, ru]
        let gxy = LowRankUpdate.product(x.up, transposeLeft: true, y.up, transposeRight: false)      // [rx, ry]
        let myv = LowRankUpdate.product(y.down, transposeLeft: false, v.down, transposeRight: true)  // [ry, rv]
        let hvu = LowRankUpdate.product(v.up, transposeLeft: true, u.up, transposeRight: false)      // [rv, ru]
        // tr(mxu^T gxy myv hvu) = sum_{i,j} mxu[i,j] (gxy myv hvu)[i,j]
        let chain = multiply(multiply(gxy, myv), hvu)
        var total = 0.0
        for index in 0..<mxu.values.count { total += mxu.values[index] * chain.values[index] }
        return total
    }

    private static func trace(_ left: Matrix, _ right: Matrix) -> Double {
        // tr(left right) with left [n, m], right [m, n]
        var total = 0.0
        for i in 0..<left.rows { for k in 0..<left.columns { total += left[i, k] * right[k, i] } }
        return total
    }

    private static func multiply(_ left: Matrix, _ right: Matrix) -> Matrix {
        var result = Matrix(rows: left.rows, columns: right.columns)
        for i in 0..<left.rows { for k in 0..<left.columns {
            let value = left[i, k]
            for j in 0..<right.columns { result.values[i * right.columns + j] += value * right[k, j] }
        } }
        return result
    }
}

/// A small dense double matrix for rank-sized products.
struct Matrix {
    var rows: Int, columns: Int
    var values: [Double]

    init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
        values = Array(repeating: 0, count: rows * columns)
    }

    subscript(row: Int, column: Int) -> Double { values[row * columns + column] }
}

/// One low-rank term s B A of a layer's update.
struct LowRankUpdate {
    var down: Tensor  // A [r, in]
    var up: Tensor    // B [out, r]
    var scale: Double

    /// op(L) op(R) in double, where each operand is a float32 [rows, columns] tensor.
    static func product(_ left: Tensor, transposeLeft: Bool, _ right: Tensor, transposeRight: Bool) -> Matrix {
        let (lr, lc) = (left.shape[0], left.shape[1]), (rr, rc) = (right.shape[0], right.shape[1])
        let rows = transposeLeft ? lc : lr, inner = transposeLeft ? lr : lc
        let columns = transposeRight ? rr : rc
        var result = Matrix(rows: rows, columns: columns)
        let l = left.floats, r = right.floats
        for i in 0..<rows { for j in 0..<columns {
            var sum = 0.0
            for k in 0..<inner {
                let a = transposeLeft ? l[k * lc + i] : l[i * lc + k]
                let b = transposeRight ? r[j * rc + k] : r[k * rc + j]
                sum += Double(a) * Double(b)
            }
            result.values[i * columns + j] = sum
        } }
        return result
    }
}
