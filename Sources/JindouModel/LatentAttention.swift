// Multi-head Latent Attention (`DeepseekV3Attention.forward`), with a compressed cache.
//
// transformers computes, per token:
//   q        = q_b_proj(q_a_layernorm(q_a_proj(x)))  or q_proj(x)     → per head [q_nope | q_rot]
//   [c|k_rot]= kv_a_proj_with_mqa(x);  c = kv_a_layernorm(c)          (one latent, one rotary key)
//   rotary on q_rot (every head) and k_rot
//   [k_nope_h | v_h] = kv_b_proj(c) per head;  k_h = [k_nope_h | k_rot]
//   o_h = softmax(scale · q_h·k_hᵀ + mask) · v_h;   out = o_proj([o_1 … o_H])
//
// Jindou caches only [c | k_rot] per token and layer (kv_lora_rank + qk_rope_head_dim
// floats instead of heads × (qk_head_dim + v_head_dim)), and computes attention in one of
// two algebraically equal forms:
//   expanded (prefill): k_nope and v of every cached position from kv_b_proj, then the
//     attention above, exactly as transformers does it.
//   absorbed (decode): with W_UK_h / W_UV_h the k_nope / v rows of head h in kv_b_proj,
//     q_nope_h·k_nope_h = (q_nope_h·W_UK_h)·c, so the query moves into latent space,
//     q̃_h = [q_nope_h·W_UK_h | q_rot_h], attends over the cached rows [c | k_rot] as
//     a single shared key head, its value being c itself; then o_h = W_UV_h · (Σ w·c).
//     The cache is never expanded; per token the work is O(heads × kv_lora_rank ×
//     (nope + v)) plus attention over latent rows.
// `LatentAttentionMode.automatic` picks, per sequence and step, the cheaper of the two by
// the multiply count (see `prefersExpanded`): decode steps always absorb.

import Foundation
import JindouNumerics

/// Which form of MLA a step uses.
public enum LatentAttentionMode: String, Sendable, CaseIterable {
    /// Absorbed for decode and short chunks, expanded for long prefill chunks.
    case automatic
    /// Always the absorbed form (what decode uses).
    case absorbed
    /// Always the expanded form (transformers' computation).
    case expanded
}

/// `DeepseekV3Attention`'s weights.
public struct LatentAttentionWeights: Sendable {
    public let queryA: WeightMatrix?
    public let queryABias: [Float]?
    public let queryANorm: [Float]?
    public let queryB: WeightMatrix?
    /// `q_proj` when the checkpoint has no q-LoRA.
    public let query: WeightMatrix?
    public let keyValueA: WeightMatrix
    public let keyValueABias: [Float]?
    public let keyValueANorm: [Float]
    public let keyValueB: WeightMatrix
    public let output: WeightMatrix
    public let outputBias: [Float]?
    /// Per head: the k_nope rows (W_UK_h, nope × kv_lora_rank) and v rows (W_UV_h,
    /// v × kv_lora_rank) of kv_b_proj, as views of the same memory.
    public let keyUp: [WeightMatrix]
    public let valueUp: [WeightMatrix]

    init(prefix p: String, shape m: LatentAttentionShape, matrix: (String) throws -> WeightMatrix,
         vector: (String) throws -> [Float]) throws {
        if m.queryLoraRank != nil {
            queryA = try matrix(p + "q_a_proj.weight")
            queryABias = m.bias ? try vector(p + "q_a_proj.bias") : nil
            queryANorm = try vector(p + "q_a_layernorm.weight")
            queryB = try matrix(p + "q_b_proj.weight")
            query = nil
        } else {
            queryA = nil
            queryABias = nil
            queryANorm = nil
            queryB = nil
            query = try matrix(p + "q_proj.weight")
        }
        keyValueA = try matrix(p + "kv_a_proj_with_mqa.weight")
        keyValueABias = m.bias ? try vector(p + "kv_a_proj_with_mqa.bias") : nil
        keyValueANorm = try vector(p + "kv_a_layernorm.weight")
        let keyValueB = try matrix(p + "kv_b_proj.weight")
        self.keyValueB = keyValueB
        output = try matrix(p + "o_proj.weight")
        outputBias = m.bias ? try vector(p + "o_proj.bias") : nil
        let perHead = m.nopeDimension + m.valueDimension
        keyUp = (0..<m.heads).map { keyValueB.rows((perHead * $0)..<(perHead * $0 + m.nopeDimension)) }
        valueUp = (0..<m.heads).map { keyValueB.rows((perHead * $0 + m.nopeDimension)..<(perHead * ($0 + 1))) }
    }
}

extension LatentAttentionShape {
    /// Whether the expanded form needs fewer multiplies than the absorbed one for `tokens`
    /// new tokens of a sequence: expansion costs kv_lora·heads·(nope+v) per cached
    /// position once, absorption costs that per new token and attends over wider rows
    /// (2·kv_lora + rope per position and head, against qk + v expanded). Since both pay
    /// per cached position, the context length cancels out.
    public func prefersExpanded(tokens: Int) -> Bool {
        let widerRows = 2 * keyValueLoraRank + ropeDimension - queryKeyDimension - valueDimension
        return widerRows > 0 && tokens * widerRows > keyValueLoraRank * (nopeDimension + valueDimension)
    }
}

extension DecoderModel {
    /// `DeepseekV3Attention.forward` for a batch: writes each token's [c | k_rot] into its
    /// sequence's cache and returns o_proj of the attended values, `count × hidden`.
    func latentAttention(
        _ w: LatentAttentionWeights, shape m: LatentAttentionShape, layer: Int, input: [Float], batch: [SequenceStep],
        sequenceOf: [Int], positions: [Int]
    ) -> [Float] {
        let count = sequenceOf.count
        let qk = m.queryKeyDimension, rowWidth = m.cacheRowWidth, heads = m.heads
        // q (q-LoRA or plain), per head [q_nope | q_rot].
        var q: [Float]
        if let queryA = w.queryA, let queryB = w.queryB, let norm = w.queryANorm {
            let compressed = project(input, rows: count, weight: queryA, bias: w.queryABias)
            q = project(rmsNormed(compressed, weight: norm, rows: count, epsilon: m.latentNormEpsilon), rows: count, weight: queryB)
        } else {
            q = project(input, rows: count, weight: w.query!)
        }
        // [c | k_rot] = kv_a_proj_with_mqa(x); c = kv_a_layernorm(c); rotary on q_rot and k_rot.
        var latent = project(input, rows: count, weight: w.keyValueA, bias: w.keyValueABias)
        latent.withUnsafeMutableBufferPointer { lb in
            w.keyValueANorm.withUnsafeBufferPointer { nb in
                for t in 0..<count {
                    let row = lb.baseAddress! + t * rowWidth
                    rmsNorm(row, rows: 1, width: m.keyValueLoraRank, weight: nb.baseAddress!, epsilon: m.latentNormEpsilon, into: row)
                }
            }
        }
        q.withUnsafeMutableBufferPointer { qb in
            latent.withUnsafeMutableBufferPointer { lb in
                for t in 0..<count {
                    rotary.apply(qb.baseAddress! + t * heads * qk + m.nopeDimension, heads: heads, position: positions[t])
                    rotary.apply(lb.baseAddress! + t * rowWidth + m.keyValueLoraRank, heads: 1, position: positions[t])
                }
            }
        }
        // past_key_values.update, compressed: one [c | k_rot] row per token.
        latent.withUnsafeBufferPointer { lb in
            for t in 0..<count {
                let cache = batch[sequenceOf[t]].cache
                (cache.keys(layer: layer) + positions[t] * rowWidth).update(from: lb.baseAddress! + t * rowWidth, count: rowWidth)
            }
        }
        // Attention, per sequence in the form the mode picks; outputs [count, heads × v].
        var attended = [Float](repeating: 0, count: count * heads * m.valueDimension)
        var start = 0
        for item in batch {
            let tokens = start..<(start + item.tokens.count)
            start = tokens.upperBound
            let expanded: Bool
            switch latentAttentionMode {
            case .automatic: expanded = m.prefersExpanded(tokens: tokens.count)
            case .absorbed: expanded = false
            case .expanded: expanded = true
            }
            if expanded {
                expandedAttention(w, shape: m, layer: layer, cache: item.cache, q: q, tokens: tokens, positions: positions,
                                  into: &attended)
            } else {
                absorbedAttention(w, shape: m, layer: layer, cache: item.cache, q: q, tokens: tokens, positions: positions,
                                  into: &attended)
            }
        }
        return project(attended, rows: count, weight: w.output, bias: w.outputBias)
    }

    /// transformers' form: kv_b_proj over every cached latent of the sequence, then eager
    /// attention with separate key (qk) and value (v) widths.
    private func expandedAttention(
        _ w: LatentAttentionWeights, shape m: LatentAttentionShape, layer: Int, cache: KVCache, q: [Float],
        tokens: Range<Int>, positions: [Int], into attended: inout [Float]
    ) {
        let heads = m.heads, qk = m.queryKeyDimension, dv = m.valueDimension, rank = m.keyValueLoraRank
        let length = positions[tokens.upperBound - 1] + 1
        let rows = cache.keys(layer: layer)
        var latents = [Float](repeating: 0, count: length * rank)
        latents.withUnsafeMutableBufferPointer { b in
            for p in 0..<length { (b.baseAddress! + p * rank).update(from: rows + p * m.cacheRowWidth, count: rank) }
        }
        let expanded = project(latents, rows: length, weight: w.keyValueB)  // per head [k_nope | v]
        var keys = [Float](repeating: 0, count: length * heads * qk)
        var values = [Float](repeating: 0, count: length * heads * dv)
        expanded.withUnsafeBufferPointer { e in
            keys.withUnsafeMutableBufferPointer { k in
                values.withUnsafeMutableBufferPointer { v in
                    for p in 0..<length {
                        for h in 0..<heads {
                            let source = e.baseAddress! + (p * heads + h) * (m.nopeDimension + dv)
                            let key = k.baseAddress! + (p * heads + h) * qk
                            key.update(from: source, count: m.nopeDimension)
                            (key + m.nopeDimension).update(from: rows + p * m.cacheRowWidth + rank, count: m.ropeDimension)
                            (v.baseAddress! + (p * heads + h) * dv).update(from: source + m.nopeDimension, count: dv)
                        }
                    }
                }
            }
        }
        q.withUnsafeBufferPointer { qb in
            keys.withUnsafeBufferPointer { kb in
                values.withUnsafeBufferPointer { vb in
                    attended.withUnsafeMutableBufferPointer { ob in
                        let query = qb.baseAddress!, out = ob.baseAddress!, key = kb.baseAddress!, value = vb.baseAddress!
                        parallelChunks(tokens.count, minimumChunk: max(1, 4096 / max(1, length))) { chunk in
                            let scores = UnsafeMutablePointer<Float>.allocate(capacity: length)
                            defer { scores.deallocate() }
                            for i in chunk {
                                let t = tokens.lowerBound + i
                                attendOneToken(
                                    query: query + t * heads * qk, heads: heads, kvHeads: heads, headDimension: qk,
                                    keys: key, values: value, rowStride: heads * qk, length: positions[t] + 1,
                                    scale: m.softmaxScale, scores: scores, into: out + t * heads * dv,
                                    valueDimension: dv, valueRowStride: heads * dv)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The absorbed form over the compressed cache (see the file comment).
    private func absorbedAttention(
        _ w: LatentAttentionWeights, shape m: LatentAttentionShape, layer: Int, cache: KVCache, q: [Float],
        tokens: Range<Int>, positions: [Int], into attended: inout [Float]
    ) {
        let heads = m.heads, qk = m.queryKeyDimension, dv = m.valueDimension, rank = m.keyValueLoraRank
        let rowWidth = m.cacheRowWidth, n = tokens.count
        let longest = positions[tokens.upperBound - 1] + 1
        // q̃ = [q_nope·W_UK | q_rot] per token and head: [n, heads, rank + rope].
        var absorbed = [Float](repeating: 0, count: n * heads * rowWidth)
        // Σ w·c per token and head, head-major so each head's W_UV applies to contiguous rows.
        var pooled = [Float](repeating: 0, count: heads * n * rank)
        q.withUnsafeBufferPointer { qb in
            absorbed.withUnsafeMutableBufferPointer { ab in
                let query = qb.baseAddress! + tokens.lowerBound * heads * qk, out = ab.baseAddress!
                parallelFor(heads) { h in
                    linearTransposed(query + h * qk, tokens: n, inputStride: heads * qk, weight: w.keyUp[h],
                                     into: out + h * rowWidth, outputStride: heads * rowWidth)
                    for i in 0..<n {
                        (out + (i * heads + h) * rowWidth + rank).update(from: query + i * heads * qk + h * qk + m.nopeDimension,
                                                                      count: m.ropeDimension)
                    }
                }
            }
        }
        let rows = cache.keys(layer: layer)
        absorbed.withUnsafeBufferPointer { ab in
            pooled.withUnsafeMutableBufferPointer { pb in
                let query = ab.baseAddress!, out = pb.baseAddress!
                parallelChunks(n, minimumChunk: max(1, 4096 / max(1, longest))) { chunk in
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: longest)
                    let latent = UnsafeMutablePointer<Float>.allocate(capacity: heads * rank)
                    defer {
                        scores.deallocate()
                        latent.deallocate()
                    }
                    for i in chunk {
                        // One shared key head of width rank + rope; its value is the latent c.
                        attendOneToken(
                            query: query + i * heads * rowWidth, heads: heads, kvHeads: 1, headDimension: rowWidth,
                            keys: rows, values: rows, rowStride: rowWidth, length: positions[tokens.lowerBound + i] + 1,
                            scale: m.softmaxScale, scores: scores, into: latent, valueDimension: rank, valueRowStride: rowWidth)
                        for h in 0..<heads { (out + (h * n + i) * rank).update(from: latent + h * rank, count: rank) }
                    }
                }
            }
        }
        // o_h = W_UV_h · pooled_h, scattered into [token, heads × v].
        pooled.withUnsafeBufferPointer { pb in
            attended.withUnsafeMutableBufferPointer { ob in
                let source = pb.baseAddress!, out = ob.baseAddress! + tokens.lowerBound * heads * dv
                parallelFor(heads) { h in
                    let values = UnsafeMutablePointer<Float>.allocate(capacity: n * dv)
                    defer { values.deallocate() }
                    linearSerial(source + h * n * rank, tokens: n, weight: w.valueUp[h], into: values)
                    for i in 0..<n { (out + (i * heads + h) * dv).update(from: values + i * dv, count: dv) }
                }
            }
        }
    }
}
