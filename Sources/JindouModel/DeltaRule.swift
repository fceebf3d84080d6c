// The delta rule of the linear-attention layers (GatedDeltaNet.swift) over one value head's
// run of tokens, in its two forms:
//
// Recurrent (transformers' `torch_recurrent_gated_delta_rule`, models/qwen3_next, and
// `recurrent_kimi_delta_attention`, models/kimi_linear): token by token through the
// kernels' `deltaRuleStep` (JindouKernelsGeneric/DeltaRuleStep.swift), which rounds as the
// plain loop does.
//
// Chunked (`torch_chunk_gated_delta_rule` and `chunk_kimi_delta_attention`, chunk 64): per
// chunk of C tokens, with G the cumulative log decay inside the chunk (per head, or per key
// channel for Kimi), Γᵢⱼ = e^{Gᵢ − Gⱼ} for j ≤ i (per channel: inside the sums) and S the state
// before the chunk:
//   A = (kβ · kᵀ) ∘ Γ, strictly lower; (I + A) · [U | W] = [vβ | kβ ∘ e^G]   (the UT transform)
//   P = (q · kᵀ) ∘ Γ, lower with the diagonal
//   V' = U − W · S;  o = (q ∘ e^G) · S + P · V'
//   S ← S · e^{G_last} + (k ∘ e^{G_last − G})ᵀ · V'
// so a chunk is a handful of matrix products (OpenBLAS) and one triangular solve instead of C
// passes over S. Kimi's per-channel Γ cannot be factored out of q·kᵀ without overflow
// (e^{−G} grows without bound), so its A and P are summed channel by channel as the torch
// fallback sums them (no sub-chunks); its products with S are the same matrix products.
// A last chunk shorter than C is computed at its length: transformers' zero padding adds
// nothing (k = 0, β = 0, g = 0 there).
//
// Which form is faster. Per token and value head at dk = dv = 128 and C = 64 the chunked
// form multiplies-and-adds ≈ 82 k times — three products with S (q·S, W·S, kᵀ·V': 3 · dk · dv)
// plus the chunk's own (A, P, the solve, P·V': ≈ C · (2 · dk + 1.5 · dv)) — against the
// recurrent form's four multiply-adds per state element (64 k): it can only win by running at
// matrix-product speed, and on this project's 2-core AVX-512 machine it does not: the SIMD
// step runs near its own roofline, and over runs of 16 to 4096 tokens the chunked form
// measures 0.67–0.94× its speed for Gated DeltaNet (0.80–0.99× in chunks of 16), 0.27–0.69×
// for Kimi's per-channel decay (`jindouctl bench linear-attention`, docs/linear-attention.md).
// So `.automatic` stays token by token; the chunked form is there for hardware where matrix
// products are much faster than the state's passes, and is tested against the recurrent one.

import Foundation
import JindouNumerics

/// One value head's inputs and outputs over a run of a sequence's tokens, as pointers into
/// the step's buffers: token t's query at `query + t · rowStride` (dk floats, L2-normalised
/// and × dk^-½), its key likewise (L2-normalised), its value (dv floats); β at
/// `beta + t · betaStride`; the log decay g ≤ 0 at `decay + t · decayStride` — one per head,
/// or (`perChannel`) one per key channel; its output at `output + t · outputStride`.
public struct DeltaRuleRun: @unchecked Sendable {
    // @unchecked: pointers into the caller's step buffers; each value head's run reads its own
    // rows and writes its own output columns, and the caller waits for every head.
    public var query: UnsafePointer<Float>
    public var key: UnsafePointer<Float>
    public var value: UnsafePointer<Float>
    public var rowStride: Int
    public var beta: UnsafePointer<Float>
    public var betaStride: Int
    public var decay: UnsafePointer<Float>
    public var decayStride: Int
    public var perChannel: Bool
    public var output: UnsafeMutablePointer<Float>
    public var outputStride: Int

    public init(query: UnsafePointer<Float>, key: UnsafePointer<Float>, value: UnsafePointer<Float>, rowStride: Int,
                beta: UnsafePointer<Float>, betaStride: Int, decay: UnsafePointer<Float>, decayStride: Int, perChannel: Bool,
                output: UnsafeMutablePointer<Float>, outputStride: Int) {
        self.query = query
        self.key = key
        self.value = value
        self.rowStride = rowStride
        self.beta = beta
        self.betaStride = betaStride
        self.decay = decay
        self.decayStride = decayStride
        self.perChannel = perChannel
        self.output = output
        self.outputStride = outputStride
    }

    /// The same run from its token `t` on.
    public func dropping(_ t: Int) -> DeltaRuleRun {
        DeltaRuleRun(query: query + t * rowStride, key: key + t * rowStride, value: value + t * rowStride, rowStride: rowStride,
                     beta: beta + t * betaStride, betaStride: betaStride, decay: decay + t * decayStride, decayStride: decayStride,
                     perChannel: perChannel, output: output + t * outputStride, outputStride: outputStride)
    }
}

/// transformers' `chunk_size`.
public let deltaRuleChunk = 64

/// Which form of the delta rule a step's runs take (`DecoderModel.deltaRuleForm`).
public enum DeltaRuleForm: String, Sendable, CaseIterable {
    /// Chunked for runs of at least `automaticChunkedMinimumTokens` tokens whose states need
    /// not be kept; the rest token by token.
    case automatic
    /// Token by token throughout.
    case recurrent
    /// Chunked for every run's leading tokens whose states need not be kept, however few —
    /// transformers' prefill (it, too, runs a speculative step's kept tokens one by one).
    case chunked

    /// The run length from which `.automatic` takes the chunked form; nil: never. Measured
    /// slower than the recurrent kernels at every run length on x86 with AVX2/AVX-512 (see
    /// the file comment), so nil.
    public static let automaticChunkedMinimumTokens: Int? = nil

    /// How many of a run's leading tokens take the chunked form, when the first `unkept` of
    /// them need not keep their states (speculation keeps the rest one by one).
    func chunkedTokens(unkept: Int) -> Int {
        switch self {
        case .automatic: Self.automaticChunkedMinimumTokens.map { unkept >= $0 ? unkept : 0 } ?? 0
        case .recurrent: 0
        case .chunked: unkept
        }
    }
}

/// The recurrent form over tokens `tokens` of `run`, from and into `state` (dk × dv);
/// `afterToken(t)` runs once token t's state is complete (speculation keeps it).
public func recurrentDeltaRule(_ run: DeltaRuleRun, tokens: Range<Int>, state: UnsafeMutablePointer<Float>,
                               keyDimension dk: Int, valueDimension dv: Int, afterToken: (Int) -> Void = { _ in }) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: run.perChannel ? dk : 1) { factors in
        let f = factors.baseAddress!
        for t in tokens {
            let g = run.decay + t * run.decayStride
            if run.perChannel {
                for i in 0..<dk { f[i] = expf(g[i]) }
            } else {
                f[0] = expf(g[0])
            }
            deltaRuleStep(state: state, keyDimension: dk, valueDimension: dv, query: run.query + t * run.rowStride,
                          key: run.key + t * run.rowStride, value: run.value + t * run.rowStride, beta: run.beta[t * run.betaStride],
                          decay: f, decayStride: run.perChannel ? 1 : 0, into: run.output + t * run.outputStride)
            afterToken(t)
        }
    }
}

/// The chunked form over tokens `0..<tokens` of `run`, from and into `state` (dk × dv), in
/// chunks of `chunk` (see the file comment). Works in the calling thread's scratch.
public func chunkedDeltaRule(_ run: DeltaRuleRun, tokens: Int, state s: UnsafeMutablePointer<Float>,
                             keyDimension dk: Int, valueDimension dv: Int, chunk: Int = deltaRuleChunk) {
    let c = min(chunk, tokens), wide = dv + dk, gw = run.perChannel ? dk : 1, xs = run.perChannel ? 1 : 0
    // q, k, kβ (c × dk each); [vβ | kβ ∘ e^G] → [U | W] → [V' | W] (c × (dv + dk)); A and P
    // (c × c); the output rows (c × dv); per token e^g, e^G and e^{G_last − G} (c × 1 or c × dk
    // each); one row of Γ (dk).
    let scratch = threadScratch(.deltaRuleChunk, Float.self, count: 3 * c * dk + c * wide + 2 * c * c + c * dv + 3 * c * gw + dk)
    let q = scratch, k = q + c * dk, kb = k + c * dk, r = kb + c * dk, a = r + c * wide, p = a + c * c, o = p + c * c
    let f = o + c * dv, eg = f + c * gw, el = eg + c * gw, gamma = el + c * gw
    var first = 0
    while first < tokens {
        let n = min(c, tokens - first)
        // Gather the chunk: q, k, kβ, vβ, and the decays as factors f = e^g, their running
        // products e^G (`cum_decay.exp()`) and e^{G_last − G} from the chunk's end. Products
        // of the per-token factors rather than exponentials of `decay.cumsum` differences: the
        // same values, each rounded as the recurrent form rounds its decays, and C · gw
        // exponentials per chunk instead of C² · gw.
        for t in 0..<n {
            let row = (first + t) * run.rowStride, b = run.beta[(first + t) * run.betaStride]
            let decay = run.decay + (first + t) * run.decayStride
            for i in 0..<dk {
                q[t * dk + i] = run.query[row + i]
                let key = run.key[row + i]
                k[t * dk + i] = key
                kb[t * dk + i] = key * b
            }
            for j in 0..<dv { r[t * wide + j] = run.value[row + j] * b }
            for x in 0..<gw {
                let factor = expf(decay[x])
                f[t * gw + x] = factor
                eg[t * gw + x] = t == 0 ? factor : eg[(t - 1) * gw + x] * factor
            }
        }
        for x in 0..<gw { el[(n - 1) * gw + x] = 1 }
        for t in stride(from: n - 2, through: 0, by: -1) {
            for x in 0..<gw { el[t * gw + x] = el[(t + 1) * gw + x] * f[(t + 1) * gw + x] }
        }
        // Γᵢⱼ = e^{Gᵢ − Gⱼ} for j ≤ i, walking j down from i: Γᵢ,ⱼ₋₁ = Γᵢⱼ · e^{gⱼ}.
        if run.perChannel {
            // chunk_kimi_delta_attention: A and P summed over channels, each with its own Γ.
            for i in 0..<n {
                for x in 0..<dk { gamma[x] = 1 }
                for j in stride(from: i, through: 0, by: -1) {
                    var sumA: Float = 0, sumP: Float = 0
                    for x in 0..<dk {
                        let kd = k[j * dk + x] * gamma[x]
                        sumA += kb[i * dk + x] * kd
                        sumP += q[i * dk + x] * kd
                        gamma[x] *= f[j * dk + x]
                    }
                    a[i * c + j] = sumA
                    p[i * c + j] = sumP
                }
                for j in (i + 1)..<n { p[i * c + j] = 0 }
            }
        } else {
            // torch_chunk_gated_delta_rule: ut_system and intra_chunk_attn, × pairwise_decay.
            gemm(kb, lda: dk, k, transposeB: true, ldb: dk, into: a, ldc: c, rows: n, columns: n, inner: dk)
            gemm(q, lda: dk, k, transposeB: true, ldb: dk, into: p, ldc: c, rows: n, columns: n, inner: dk)
            for i in 0..<n {
                var decay: Float = 1
                for j in stride(from: i, through: 0, by: -1) {
                    a[i * c + j] *= decay
                    p[i * c + j] *= decay
                    decay *= f[j]
                }
                for j in (i + 1)..<n { p[i * c + j] = 0 }
            }
        }
        // The right-hand side's second half, kβ ∘ e^G (`decayed_k_beta`), then the UT solve.
        for t in 0..<n {
            for i in 0..<dk { r[t * wide + dv + i] = kb[t * dk + i] * eg[t * gw + i * xs] }
        }
        solveUnitLowerTriangular(a, order: n, lda: c, r, columns: wide, ldb: wide)
        // o = (q ∘ e^G) · S; V' = U − W · S; o += P · V'.
        for t in 0..<n {
            for i in 0..<dk { q[t * dk + i] *= eg[t * gw + i * xs] }
        }
        gemm(q, lda: dk, s, ldb: dv, into: o, ldc: dv, rows: n, columns: dv, inner: dk)
        gemm(r + dv, lda: wide, s, ldb: dv, into: r, ldc: wide, rows: n, columns: dv, inner: dk, alpha: -1, beta: 1)
        gemm(p, lda: c, r, ldb: wide, into: o, ldc: dv, rows: n, columns: dv, inner: n, beta: 1)
        // S ← S · e^{G_last} + (k ∘ e^{G_last − G})ᵀ · V'.
        let lastFactors = eg + (n - 1) * gw
        for i in 0..<dk {
            let decay = lastFactors[i * xs]
            for j in 0..<dv { s[i * dv + j] *= decay }
        }
        for t in 0..<n {
            for i in 0..<dk { k[t * dk + i] *= el[t * gw + i * xs] }
        }
        gemm(k, transposeA: true, lda: dk, r, ldb: wide, into: s, ldc: dv, rows: dk, columns: dv, inner: n, beta: 1)
        for t in 0..<n { (run.output + (first + t) * run.outputStride).update(from: o + t * dv, count: dv) }
        first += n
    }
}
