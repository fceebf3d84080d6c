// Qwen3-Next's linear attention, mirroring transformers' `Qwen3NextGatedDeltaNet.forward`
// (models/qwen3_next/modeling_qwen3_next.py); the delta rule itself, in its recurrent
// (`torch_recurrent_gated_delta_rule`) and chunked (`torch_chunk_gated_delta_rule`) forms, is
// in DeltaRule.swift:
//   in_proj_qkvz(x) → per key head [q (dk) | k (dk) | v (r·dv) | z (r·dv)], r = value heads /
//       key heads; in_proj_ba(x) → per key head [b (r) | a (r)]  (`fix_query_key_value_ordering`);
//       Qwen3.5 (`Qwen3_5GatedDeltaNet`) splits them: in_proj_qkv (already [q | k | v]), in_proj_z,
//       in_proj_b, in_proj_a; llama.cpp's converter splits in_proj_qkvz into in_proj_qkv and
//       in_proj_z and keeps in_proj_ba (`LinearProjectionLayout.splitQKVZ`)
//   [q | k | v] (all heads) → causal depthwise conv1d (kernel K, no bias) → SiLU
//   q, k: L2-normalised per head (ε 1e-6), q × dk^-½; value head h reads key head h / r (llama.cpp's
//       Qwen3.5 files: h mod key heads, `tiledValueHeads`)
//   β = σ(b); g = −exp(A_log) · softplus(a + dt_bias)
//   per token and value head, S (dk × dv, fp32): S ← S·e^g; S ← S + k ⊗ β(v − Sᵀk); o = Sᵀq
//   o → RMSNorm per head (weight w, not zero-centred) × SiLU(z) → out_proj
// The sequence's state (KVCache.state(layer:)) is the conv's last K − 1 inputs and S.
//
// Kimi Delta Attention (transformers' `KimiLinearDeltaAttention` = `Glm5NextTextLinearAttention`
// with Kimi's forget gate; `recurrent_kimi_delta_attention`, `chunk_kimi_delta_attention`) is the same
// recurrence with:
//   q_proj, k_proj, v_proj (heads × d each, no grouping), their convs (`q/k/v_conv1d`, one conv
//   over [q | k | v]); β = σ(b_proj(x)) per head; the decay per key channel,
//   g = −exp(A_log[head]) · softplus(f_b_proj(f_a_proj(x)) + dt_bias), so S's row i decays by
//   e^{g_i}; the output o → RMSNorm per head × w × σ(g_b_proj(g_a_proj(x))) → o_proj.
// Ling's (`BailingHybridDeltaAttention`) has full-rank gates, f_proj and g_proj, the bounded
// forget gate g = lower bound · σ(exp(A_log) · (f + dt_bias)) with `kda_safe_gate`, and its
// output projection named `dense`.
//
// Decode cost per token and layer: the state update (the kernels' `deltaRuleStep`) reads and
// writes S once — value heads × dk × dv fp32 values (4 · 32 · 128 · 128 B = 2 MiB each way for
// Qwen3-Next-80B) — whatever the context length. Prefill runs the same step token by token,
// value heads in parallel: the chunked form (`DecoderModel.deltaRuleForm = .chunked`, as
// transformers prefills) measured slower on CPUs (DeltaRule.swift says by how much). A
// speculative step's kept tokens always run token by token, each one's state copied out.

import Foundation
import JindouNumerics

/// One Gated DeltaNet block's weights (`linear_attn.*`).
public struct GatedDeltaNetWeights: Sendable {
    /// The input projections: Qwen3-Next's two fused ones, grouped per key head, or Qwen3.5's four.
    public enum Projections: Sendable {
        case fused(qkvz: WeightMatrix, ba: WeightMatrix)
        case split(qkv: WeightMatrix, z: WeightMatrix, b: WeightMatrix, a: WeightMatrix)
        case splitQKVZ(qkv: WeightMatrix, z: WeightMatrix, ba: WeightMatrix)
        /// Kimi Delta Attention: separate q/k/v, β, and the forget and output gates, each a chain
        /// of projections applied in order (Kimi's low-rank pair, Ling's single full-rank one).
        case kimi(query: WeightMatrix, key: WeightMatrix, value: WeightMatrix, beta: WeightMatrix,
                  forget: [WeightMatrix], gate: [WeightMatrix])
    }

    public let projections: Projections
    /// `conv1d.weight` [channels, 1, K] as channels × K.
    public let convolution: [Float]
    public let timeStepBias: [Float]
    /// −exp(A_log), per value head.
    public let decayRate: [Float]
    public let norm: [Float]
    public let output: WeightMatrix

    init(prefix p: String, shape s: LinearAttentionShape, dense: (String) throws -> WeightMatrix, vector: (String) throws -> [Float]) throws {
        timeStepBias = try vector(p + "dt_bias")
        // -self.A_log.float().exp(), or from what a GGUF file stores instead (ssm_a).
        let decay = try vector(p + "A_log")
        switch s.storedDecay {
        case .logarithm: decayRate = decay.map { -expf($0) }
        case .negatedExponential: decayRate = decay
        case .exponential: decayRate = decay.map { -$0 }
        }
        if s.kind != .gatedDeltaNet {
            let names = Self.kimiGateNames(s)
            projections = .kimi(query: try dense(p + "q_proj.weight"), key: try dense(p + "k_proj.weight"),
                                value: try dense(p + "v_proj.weight"), beta: try dense(p + "b_proj.weight"),
                                forget: try names.forget.map { try dense(p + $0 + ".weight") },
                                gate: try names.gate.map { try dense(p + $0 + ".weight") })
            // The checkpoint's three convs, stacked as transformers stacks them (Concatenate(dim=0)).
            convolution = try vector(p + "q_conv1d.weight") + vector(p + "k_conv1d.weight") + vector(p + "v_conv1d.weight")
            norm = try vector(p + "o_norm.weight")
            output = try dense(p + names.output + ".weight")
            return
        }
        switch s.projections {
        case .fused: projections = .fused(qkvz: try dense(p + "in_proj_qkvz.weight"), ba: try dense(p + "in_proj_ba.weight"))
        case .split:
            projections = .split(qkv: try dense(p + "in_proj_qkv.weight"), z: try dense(p + "in_proj_z.weight"),
                                 b: try dense(p + "in_proj_b.weight"), a: try dense(p + "in_proj_a.weight"))
        case .splitQKVZ:
            projections = .splitQKVZ(qkv: try dense(p + "in_proj_qkv.weight"), z: try dense(p + "in_proj_z.weight"),
                                     ba: try dense(p + "in_proj_ba.weight"))
        }
        convolution = try vector(p + "conv1d.weight")
        norm = try vector(p + "norm.weight")
        output = try dense(p + "out_proj.weight")
    }

    /// KDA's gate modules and output projection: Kimi's low-rank pairs and `o_proj`, Ling's
    /// single full-rank projections and `dense`.
    static func kimiGateNames(_ s: LinearAttentionShape) -> (forget: [String], gate: [String], output: String) {
        s.kind == .lingDelta ? (["f_proj"], ["g_proj"], "dense") : (["f_a_proj", "f_b_proj"], ["g_a_proj", "g_b_proj"], "o_proj")
    }

    static func tensorRequests(prefix p: String, shape s: LinearAttentionShape, hidden h: Int,
                               linear: (String, [Int]) -> [TensorRequest]) -> [TensorRequest] {
        if s.kind != .gatedDeltaNet {
            let width = s.keyWidth, d = s.keyHeadDimension, names = Self.kimiGateNames(s)
            // Each gate chain maps hidden → width, through d when low-rank.
            func chain(_ modules: [String]) -> [TensorRequest] {
                modules.count == 1 ? linear(p + modules[0] + ".weight", [width, h])
                    : linear(p + modules[0] + ".weight", [d, h]) + linear(p + modules[1] + ".weight", [width, d])
            }
            return ["q_proj", "k_proj", "v_proj"].flatMap { linear(p + $0 + ".weight", [width, h]) }
                + ["q_conv1d", "k_conv1d", "v_conv1d"].map { TensorRequest(p + $0 + ".weight", shape: [width, 1, s.convolutionKernel]) }
                + linear(p + "b_proj.weight", [s.valueHeads, h]) + chain(names.forget) + chain(names.gate)
                + [TensorRequest(p + "dt_bias", shape: [width]),
                   TensorRequest(p + "A_log", shape: s.kind == .lingDelta ? [s.valueHeads] : [1, 1, s.valueHeads, 1]),
                   TensorRequest(p + "o_norm.weight", shape: [s.valueHeadDimension])]
                + linear(p + names.output + ".weight", [h, s.valueWidth])
        }
        let projections: [TensorRequest]
        switch s.projections {
        case .fused:
            projections = linear(p + "in_proj_qkvz.weight", [2 * s.keyWidth + 2 * s.valueWidth, h])
                + linear(p + "in_proj_ba.weight", [2 * s.valueHeads, h])
        case .split:
            projections = linear(p + "in_proj_qkv.weight", [s.convolutionChannels, h]) + linear(p + "in_proj_z.weight", [s.valueWidth, h])
                + linear(p + "in_proj_b.weight", [s.valueHeads, h]) + linear(p + "in_proj_a.weight", [s.valueHeads, h])
        case .splitQKVZ:
            projections = linear(p + "in_proj_qkv.weight", [s.convolutionChannels, h]) + linear(p + "in_proj_z.weight", [s.valueWidth, h])
                + linear(p + "in_proj_ba.weight", [2 * s.valueHeads, h])
        }
        return projections
            + [TensorRequest(p + "conv1d.weight", shape: [s.convolutionChannels, 1, s.convolutionKernel]),
               TensorRequest(p + "dt_bias", shape: [s.valueHeads]), TensorRequest(p + "A_log", shape: [s.valueHeads]),
               TensorRequest(p + "norm.weight", shape: [s.valueHeadDimension])]
            + linear(p + "out_proj.weight", [h, s.valueWidth])
    }
}

extension DecoderModel {
    /// `Qwen3NextGatedDeltaNet.forward` over a step's tokens (each sequence's in order, from
    /// and into its state in cache layer `layer`).
    func gatedDeltaNet(_ w: GatedDeltaNetWeights, layer: Int, input: [Float], batch: [SequenceStep], sequenceOf: [Int],
                       form: DeltaRuleForm) -> [Float] {
        let s = description.linearAttention!
        let count = sequenceOf.count
        let dk = s.keyHeadDimension, dv = s.valueHeadDimension, ratio = s.valueHeads / s.keyHeads
        let channels = s.convolutionChannels, kernel = s.convolutionKernel
        // [q | k | v] in conv channel order, z (the output gate before its activation), and b
        // and a per value head (Kimi: a per key channel), for every token.
        var mixed: [Float], z: [Float], b: [Float], a: [Float]
        let perChannel = s.kind != .gatedDeltaNet
        switch w.projections {
        case .kimi(let query, let key, let value, let betaWeight, let forget, let gate):
            let q = project(input, rows: count, weight: query), k = project(input, rows: count, weight: key)
            let v = project(input, rows: count, weight: value)
            mixed = [Float](repeating: 0, count: count * channels)
            for t in 0..<count {
                for i in 0..<s.keyWidth {
                    mixed[t * channels + i] = q[t * s.keyWidth + i]
                    mixed[t * channels + s.keyWidth + i] = k[t * s.keyWidth + i]
                }
                for i in 0..<s.valueWidth { mixed[t * channels + 2 * s.keyWidth + i] = v[t * s.valueWidth + i] }
            }
            b = project(input, rows: count, weight: betaWeight)
            a = forget.reduce(input) { project($0, rows: count, weight: $1) }
            z = gate.reduce(input) { project($0, rows: count, weight: $1) }
        case .split(let qkv, let zWeight, let bWeight, let aWeight):
            mixed = project(input, rows: count, weight: qkv)
            z = project(input, rows: count, weight: zWeight)
            b = project(input, rows: count, weight: bWeight)
            a = project(input, rows: count, weight: aWeight)
        case .splitQKVZ(let qkv, let zWeight, let baWeight):
            mixed = project(input, rows: count, weight: qkv)
            z = project(input, rows: count, weight: zWeight)
            (b, a) = splitGroupedBetaAlpha(project(input, rows: count, weight: baWeight), tokens: count, shape: s)
        case .fused(let qkvzWeight, let baWeight):
            // fix_query_key_value_ordering: both projections are grouped per key head.
            let qkvz = project(input, rows: count, weight: qkvzWeight)
            (b, a) = splitGroupedBetaAlpha(project(input, rows: count, weight: baWeight), tokens: count, shape: s)
            let groupWidth = 2 * dk + 2 * ratio * dv
            mixed = [Float](repeating: 0, count: count * channels)
            z = [Float](repeating: 0, count: count * s.valueWidth)
            for t in 0..<count {
                for g in 0..<s.keyHeads {
                    let source = t * (s.keyHeads * groupWidth) + g * groupWidth
                    for i in 0..<dk {
                        mixed[t * channels + g * dk + i] = qkvz[source + i]
                        mixed[t * channels + s.keyWidth + g * dk + i] = qkvz[source + dk + i]
                    }
                    for i in 0..<(ratio * dv) {
                        mixed[t * channels + 2 * s.keyWidth + g * ratio * dv + i] = qkvz[source + 2 * dk + i]
                        z[t * s.valueWidth + g * ratio * dv + i] = qkvz[source + 2 * dk + ratio * dv + i]
                    }
                }
            }
        }
        var beta = [Float](repeating: 0, count: count * s.valueHeads)
        // Per token: one decay per value head, or (Kimi) one per key channel of each head.
        let decayWidth = perChannel ? s.keyWidth : s.valueHeads
        var decay = [Float](repeating: 0, count: count * decayWidth)
        for t in 0..<count {
            for h in 0..<s.valueHeads { beta[t * s.valueHeads + h] = sigmoid(b[t * s.valueHeads + h]) }
            for c in 0..<decayWidth {
                let x = a[t * decayWidth + c] + w.timeStepBias[c], rate = w.decayRate[perChannel ? c / dk : c]
                if let bound = s.forgetGateLowerBound {
                    // Ling's safe gate: lower bound · σ(exp(A_log) · x).
                    decay[t * decayWidth + c] = bound * sigmoid(-rate * x)
                } else {
                    // softplus (threshold 20) of a + dt_bias, times −exp(A_log) of the channel's head.
                    decay[t * decayWidth + c] = rate * (x > 20 ? x : log1pf(expf(x)))
                }
            }
        }

        var attended = [Float](repeating: 0, count: count * s.valueWidth)
        var start = 0
        while start < count {
            var end = start + 1
            while end < count && sequenceOf[end] == sequenceOf[start] { end += 1 }
            let cache = batch[sequenceOf[start]].cache
            let state = cache.state(layer: layer)
            // Speculation: the state after each kept token (conv history, then S).
            let kept = (0..<(end - start)).map { cache.keptStateSlot(layer: layer, index: $0, tokens: end - start) }
            convolve(&mixed, rows: start..<end, weights: w.convolution, history: state, channels: channels, kernel: kernel) { i, history in
                kept[i]?.update(from: history, count: (kernel - 1) * channels)
            }
            let recurrent = state + (kernel - 1) * channels
            mixed.withUnsafeMutableBufferPointer { m in
                attended.withUnsafeMutableBufferPointer { o in
                    let mixedBase = m.baseAddress!, out = o.baseAddress!
                    // Key heads' q and k normalised once per token.
                    for t in start..<end {
                        for g in 0..<(2 * s.keyHeads) {
                            let v = mixedBase + t * channels + g * dk
                            var sum: Float = 0
                            for i in 0..<dk { sum += v[i] * v[i] }
                            // l2norm: x · rsqrt(Σx² + 1e-6); queries also × dk^-½.
                            let scale = 1 / (sum + 1e-6).squareRoot() * (g < s.keyHeads ? 1 / Float(dk).squareRoot() : 1)
                            for i in 0..<dk { v[i] *= scale }
                        }
                    }
                    // The leading tokens whose states need not be kept may run chunked (see
                    // `DeltaRuleForm`; transformers splits off its `recurrent_states_to_keep` the
                    // same way), the rest token by token, keeping each kept token's state.
                    let chunked = form.chunkedTokens(unkept: kept.firstIndex { $0 != nil } ?? (end - start))
                    beta.withUnsafeBufferPointer { betaBuffer in
                        decay.withUnsafeBufferPointer { decayBuffer in
                            let betaBase = betaBuffer.baseAddress!, decayBase = decayBuffer.baseAddress!
                            parallelChunks(s.valueHeads, minimumChunk: 1) { heads in
                                for h in heads {
                                    let stateHead = recurrent + h * dk * dv
                                    // The key head value head h reads (grouped, or tiled in llama.cpp's Qwen3.5 files).
                                    let row = mixedBase + start * channels, g = s.tiledValueHeads ? h % s.keyHeads : h / ratio
                                    let run = DeltaRuleRun(
                                        query: row + g * dk, key: row + s.keyWidth + g * dk, value: row + 2 * s.keyWidth + h * dv,
                                        rowStride: channels, beta: betaBase + start * s.valueHeads + h, betaStride: s.valueHeads,
                                        decay: decayBase + start * decayWidth + (perChannel ? h * dk : h), decayStride: decayWidth,
                                        perChannel: perChannel, output: out + start * s.valueWidth + h * dv, outputStride: s.valueWidth)
                                    if chunked > 0 {
                                        chunkedDeltaRule(run, tokens: chunked, state: stateHead, keyDimension: dk, valueDimension: dv)
                                    }
                                    recurrentDeltaRule(run, tokens: chunked..<(end - start), state: stateHead, keyDimension: dk,
                                                       valueDimension: dv) { t in
                                        if let slot = kept[t] {
                                            (slot + (kernel - 1) * channels + h * dk * dv).update(from: stateHead, count: dk * dv)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            start = end
        }

        // Qwen3NextRMSNormGated per value head: x · rsqrt(mean(x²) + ε) · w · silu(z)
        // (Kimi's KimiLinearRMSNormGated: · σ(z)).
        let epsilon = description.rmsNormEpsilon
        for row in 0..<(count * s.valueHeads) {
            let base = row * dv
            var sum: Float = 0
            for j in 0..<dv { sum += attended[base + j] * attended[base + j] }
            let inverse = 1 / (sum / Float(dv) + epsilon).squareRoot()
            for j in 0..<dv {
                let gate = z[base + j]
                attended[base + j] = w.norm[j] * (attended[base + j] * inverse) * (perChannel ? sigmoid(gate) : gate * sigmoid(gate))
            }
        }
        return project(attended, rows: count, weight: w.output)
    }

    /// `in_proj_ba`'s output, grouped per key head as [b (r) | a (r)] (r value heads per key
    /// head), as b and a per value head.
    private func splitGroupedBetaAlpha(_ ba: [Float], tokens: Int, shape s: LinearAttentionShape) -> (b: [Float], a: [Float]) {
        let ratio = s.valueHeads / s.keyHeads
        var b = [Float](repeating: 0, count: tokens * s.valueHeads), a = b
        for t in 0..<tokens {
            for g in 0..<s.keyHeads {
                for j in 0..<ratio {
                    b[t * s.valueHeads + g * ratio + j] = ba[t * 2 * s.valueHeads + g * 2 * ratio + j]
                    a[t * s.valueHeads + g * ratio + j] = ba[t * 2 * s.valueHeads + g * 2 * ratio + ratio + j]
                }
            }
        }
        return (b, a)
    }

    /// `causal_conv1d` with SiLU over rows `rows` of `x` (one sequence's tokens in order),
    /// in place: output[t, c] = silu(Σⱼ w[c, j] · input[t − K + 1 + j, c]), the inputs before the
    /// step from `history` (the last K − 1, oldest first), which is then advanced.
    private func convolve(_ x: inout [Float], rows: Range<Int>, weights: [Float], history: UnsafeMutablePointer<Float>,
                          channels: Int, kernel: Int, keep: (Int, UnsafePointer<Float>) -> Void) {
        let n = rows.count, past = kernel - 1
        // The window: K − 1 remembered rows, then the step's inputs.
        var window = [Float](repeating: 0, count: (past + n) * channels)
        window.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: history, count: past * channels) }
        for (i, t) in rows.enumerated() {
            for c in 0..<channels { window[(past + i) * channels + c] = x[t * channels + c] }
        }
        for (i, t) in rows.enumerated() {
            for c in 0..<channels {
                var sum: Float = 0
                for j in 0..<kernel { sum += weights[c * kernel + j] * window[(i + j) * channels + c] }
                x[t * channels + c] = sum * sigmoid(sum)
            }
        }
        // The newest K − 1 inputs become the history (and after each token, its history then).
        window.withUnsafeBufferPointer { w in
            for i in 0..<n { keep(i, w.baseAddress! + (i + 1) * channels) }
            history.update(from: w.baseAddress! + n * channels, count: past * channels)
        }
    }
}

extension DecoderModel {
    /// One decode token through layer `layer`'s token mixer alone (benchmarks): attention over
    /// the cache's `length` positions, or the linear layer's state update. The cache's length
    /// does not change, so the step can be repeated.
    public func mixerDecodeStep(layer: Int, input: [Float], cache: KVCache) -> [Float] {
        let step = SequenceStep(cache: cache, tokens: [0])
        var selections: [[Int]]? = nil
        return attend(layers[layer].attention, cacheLayer: layer, input: input, batch: [step], layout: StepLayout([step]),
                      selections: &selections)
    }

    /// `tokens` prefill tokens (`input`: tokens × hidden) through linear-attention layer
    /// `layer`'s mixer alone, in the delta rule's form `form` (benchmarks). The cache's length
    /// does not change; its state carries on from the previous call.
    public func linearMixerPrefill(layer: Int, input: [Float], tokens: Int, cache: KVCache, form: DeltaRuleForm) -> [Float] {
        guard case .linear(let weights) = layers[layer].attention else { preconditionFailure("layer \(layer) is not linear attention") }
        let step = SequenceStep(cache: cache, tokens: [Int](repeating: 0, count: tokens))
        return gatedDeltaNet(weights, layer: layer, input: input, batch: [step], sequenceOf: StepLayout([step]).sequenceOf, form: form)
    }
}
