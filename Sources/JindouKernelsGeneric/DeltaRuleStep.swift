import JindouTensors

// One token of the (gated) delta rule for one value head, on its state S (dk × dv, row-major
// fp32), as transformers' `torch_recurrent_gated_delta_rule` (models/qwen3_next) and
// `recurrent_kimi_delta_attention` (models/kimi_linear) compute it per step:
//   S ← S · f              (f = e^g: one factor for the head, or Kimi's one per row of S)
//   kv_mem = Sᵀk;  delta = (v − kv_mem) · β
//   S ← S + k ⊗ delta;  o = Sᵀq
// Each column of S evolves on its own, so the kernel walks S in blocks of 64 columns, two
// passes per block: the first reads the block and sums kv_memⱼ = Σᵢ (Sᵢⱼ · fᵢ) · kᵢ without
// writing; the second recomputes Sᵢⱼ · fᵢ, adds kᵢ · deltaⱼ, writes the block once and sums
// oⱼ. A block (dk × 64 × 4 B = 32 KiB at dk 128) is mostly still in L1 when the second pass
// reads it again. Every element is rounded as the plain loop rounds it — a multiply, then
// an add, rows summed in order — so the result is the same in every kernel set and equals
// the scalar loop bit for bit; only the loop over columns is vectorised.
//
// Bytes per token and layer: the state is read once from L2 (or memory) and written once —
// value heads × dk × dv × 4 B each way (Qwen3-Next-80B: 32 × 128 × 128 × 4 B = 2 MiB read and
// 2 MiB written per linear layer), whatever the context length. Arithmetic: eight multiplies
// or adds per state element (128 k per head at 128 × 128); on this project's AVX-512 machine
// a head takes ~1.9 µs (~5 k cycles): load/store and FP-pipe throughput from L1/L2, not
// DRAM, bound it, as a head's 64 KiB state stays in L2 across a run of tokens.

/// See the file comment. `decay` holds the factors e^g: one (`decayStride` 0) or one per row
/// of S (`decayStride` 1).
func deltaRule(
    state s: UnsafeMutablePointer<Float>, keyDimension dk: Int, valueDimension dv: Int,
    query q: UnsafePointer<Float>, key k: UnsafePointer<Float>, value v: UnsafePointer<Float>, beta: Float,
    decay f: UnsafePointer<Float>, decayStride: Int, into out: UnsafeMutablePointer<Float>
) {
    var j = 0
    while j &+ 64 <= dv {
        deltaRuleColumns64(s + j, dk: dk, dv: dv, q: q, k: k, v: v + j, beta: beta, f: f, fs: decayStride, out: out + j)
        j &+= 64
    }
    while j &+ 16 <= dv {
        deltaRuleColumns16(s + j, dk: dk, dv: dv, q: q, k: k, v: v + j, beta: beta, f: f, fs: decayStride, out: out + j)
        j &+= 16
    }
    while j < dv {
        deltaRuleColumn(s + j, dk: dk, dv: dv, q: q, k: k, v: v + j, beta: beta, f: f, fs: decayStride, out: out + j)
        j &+= 1
    }
}

/// Columns 0 ..< 64 of the block at `s` (row i at `s + i · dv`), as four 16-wide lanes.
@inline(__always)
private func deltaRuleColumns64(
    _ s: UnsafeMutablePointer<Float>, dk: Int, dv: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
    v: UnsafePointer<Float>, beta: Float, f: UnsafePointer<Float>, fs: Int, out: UnsafeMutablePointer<Float>
) {
    // Pass 1: kv_mem = Σᵢ (Sᵢ · fᵢ) · kᵢ.
    var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
    for i in 0..<dk {
        let r = s + i &* dv, fi = SIMD16<Float>(repeating: f[i &* fs]), ki = SIMD16<Float>(repeating: k[i])
        a0 = a0 + (load16(r) * fi) * ki
        a1 = a1 + (load16(r + 16) * fi) * ki
        a2 = a2 + (load16(r + 32) * fi) * ki
        a3 = a3 + (load16(r + 48) * fi) * ki
    }
    let b = SIMD16<Float>(repeating: beta)
    let d0 = (load16(v) - a0) * b, d1 = (load16(v + 16) - a1) * b
    let d2 = (load16(v + 32) - a2) * b, d3 = (load16(v + 48) - a3) * b
    // Pass 2: Sᵢ ← Sᵢ · fᵢ + kᵢ · delta; o = Σᵢ Sᵢ · qᵢ.
    var o0 = SIMD16<Float>(), o1 = SIMD16<Float>(), o2 = SIMD16<Float>(), o3 = SIMD16<Float>()
    for i in 0..<dk {
        let r = s + i &* dv, fi = SIMD16<Float>(repeating: f[i &* fs])
        let ki = SIMD16<Float>(repeating: k[i]), qi = SIMD16<Float>(repeating: q[i])
        let x0 = load16(r) * fi + ki * d0, x1 = load16(r + 16) * fi + ki * d1
        let x2 = load16(r + 32) * fi + ki * d2, x3 = load16(r + 48) * fi + ki * d3
        store16(x0, r)
        store16(x1, r + 16)
        store16(x2, r + 32)
        store16(x3, r + 48)
        o0 = o0 + x0 * qi
        o1 = o1 + x1 * qi
        o2 = o2 + x2 * qi
        o3 = o3 + x3 * qi
    }
    store16(o0, out)
    store16(o1, out + 16)
    store16(o2, out + 32)
    store16(o3, out + 48)
}

/// Columns 0 ..< 16 of the block at `s` (value widths that are not a multiple of 64).
@inline(__always)
private func deltaRuleColumns16(
    _ s: UnsafeMutablePointer<Float>, dk: Int, dv: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
    v: UnsafePointer<Float>, beta: Float, f: UnsafePointer<Float>, fs: Int, out: UnsafeMutablePointer<Float>
) {
    var a = SIMD16<Float>()
    for i in 0..<dk { a = a + (load16(s + i &* dv) * SIMD16(repeating: f[i &* fs])) * SIMD16(repeating: k[i]) }
    let d = (load16(v) - a) * SIMD16(repeating: beta)
    var o = SIMD16<Float>()
    for i in 0..<dk {
        let r = s + i &* dv
        let x = load16(r) * SIMD16(repeating: f[i &* fs]) + SIMD16(repeating: k[i]) * d
        store16(x, r)
        o = o + x * SIMD16(repeating: q[i])
    }
    store16(o, out)
}

/// Column 0 of the block at `s` alone.
@inline(__always)
private func deltaRuleColumn(
    _ s: UnsafeMutablePointer<Float>, dk: Int, dv: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
    v: UnsafePointer<Float>, beta: Float, f: UnsafePointer<Float>, fs: Int, out: UnsafeMutablePointer<Float>
) {
    var a: Float = 0
    for i in 0..<dk { a = a + (s[i &* dv] * f[i &* fs]) * k[i] }
    let d = (v[0] - a) * beta
    var o: Float = 0
    for i in 0..<dk {
        let x = s[i &* dv] * f[i &* fs] + k[i] * d
        s[i &* dv] = x
        o = o + x * q[i]
    }
    out[0] = o
}

@inline(__always)
private func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

@inline(__always)
private func store16(_ x: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD16<Float>.self)
}
