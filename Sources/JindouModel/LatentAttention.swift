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
//
// Where W_UK / W_UV come from (`LatentUpProjections`): Hugging Face checkpoints store one
// kv_b_proj, whose rows per head are [W_UK_h | W_UV_h]; llama.cpp's converter splits it into
// `attn_k_b` (W_UK_hᵀ per head, kv_lora_rank × nope) and `attn_v_b` (W_UV_h per head). Both
// are used as stored, nothing is copied: with W_UK_hᵀ stored, the absorbed query
// W_UK_hᵀ·q_nope_h is an ordinary projection, and the expanded keys c·W_UK_hᵀ take the x·W
// kernel (`linearTransposed`) that the absorbed query takes with kv_b_proj's rows.

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

/// How a checkpoint stores MLA's up-projections from the latent.
public enum LatentUpProjections: Sendable, Equatable {
    /// `kv_b_proj` [heads · (nope + v), kv_lora_rank] (Hugging Face).
    case joint
    /// `k_b_proj` [heads, kv_lora_rank, nope] (each head's W_UK transposed) and `v_b_proj`
    /// [heads, v, kv_lora_rank] (each head's W_UV): llama.cpp's `attn_k_b` / `attn_v_b`.
    case split
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
    /// kv_b_proj, when the checkpoint stores it whole (`LatentUpProjections.joint`).
    public let keyValueB: WeightMatrix?
    public let output: WeightMatrix
    public let outputBias: [Float]?
    /// Ling's per-head output gate (`g_proj`), nil elsewhere.
    public let headGate: WeightMatrix?
    /// Per head W_UK_h: the k_nope rows of kv_b_proj (nope × kv_lora_rank), or with
    /// `keyUpTransposed` W_UK_hᵀ (kv_lora_rank × nope) as `k_b_proj` stores it. Views of the
    /// checkpoint's memory either way.
    public let keyUp: [WeightMatrix]
    public let keyUpTransposed: Bool
    /// Per head W_UV_h (v × kv_lora_rank): the v rows of kv_b_proj, or `v_b_proj`'s slice.
    public let valueUp: [WeightMatrix]
    /// DeepSeek Sparse Attention's indexer (SparseIndexer.swift), when the shape has one.
    public let indexer: SparseIndexerWeights?

    /// `matrix(name, shape)` loads a 2-D weight as stored, viewed as `shape` when given;
    /// `dense(name)` loads a projection (re-encoded by `DecoderModel`'s `denseFormat`).
    init(prefix p: String, layer: Int, shape m: LatentAttentionShape, matrix load: (String, [Int]?) throws -> WeightMatrix,
         dense: (String) throws -> WeightMatrix, vector: (String) throws -> [Float]) throws {
        if m.queryLoraRank != nil {
            queryA = try dense(p + "q_a_proj.weight")
            queryABias = m.bias ? try vector(p + "q_a_proj.bias") : nil
            queryANorm = try vector(p + "q_a_layernorm.weight")
            queryB = try dense(p + "q_b_proj.weight")
            query = nil
        } else {
            queryA = nil
            queryABias = nil
            queryANorm = nil
            queryB = nil
            query = try dense(p + "q_proj.weight")
        }
        keyValueA = try dense(p + "kv_a_proj_with_mqa.weight")
        keyValueABias = m.bias ? try vector(p + "kv_a_proj_with_mqa.bias") : nil
        keyValueANorm = try vector(p + "kv_a_layernorm.weight")
        output = try dense(p + m.outputName + ".weight")
        outputBias = m.bias ? try vector(p + m.outputName + ".bias") : nil
        headGate = m.headGate ? try dense(p + "g_proj.weight") : nil
        indexer = m.indexer?.hasIndexer(layer: layer) == true ? try SparseIndexerWeights(prefix: p, dense: dense, vector: vector) : nil
        let (rank, nope, v) = (m.keyValueLoraRank, m.nopeDimension, m.valueDimension)
        switch m.upProjections {
        case .joint:
            let keyValueB = try load(p + "kv_b_proj.weight", nil)
            self.keyValueB = keyValueB
            let perHead = nope + v
            keyUp = (0..<m.heads).map { keyValueB.rows((perHead * $0)..<(perHead * $0 + nope)) }
            keyUpTransposed = false
            valueUp = (0..<m.heads).map { keyValueB.rows((perHead * $0 + nope)..<(perHead * ($0 + 1))) }
        case .split:
            keyValueB = nil
            let keys = try load(p + "k_b_proj.weight", [m.heads * rank, nope])
            let values = try load(p + "v_b_proj.weight", [m.heads * v, rank])
            keyUp = (0..<m.heads).map { keys.rows((rank * $0)..<(rank * ($0 + 1))) }
            keyUpTransposed = true
            valueUp = (0..<m.heads).map { values.rows((v * $0)..<(v * ($0 + 1))) }
        }
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
    /// With sparse attention, `selections` carries each token's attended positions from the
    /// layer whose indexer chose them to the layers that share them (GLM-5's "shared").
    func latentAttention(
        _ w: LatentAttentionWeights, shape m: LatentAttentionShape, layer: Int, input: [Float], batch: [SequenceStep],
        sequenceOf: [Int], positions: [Int], ropePositions: [Int], selections: inout [[Int]]?
    ) -> [Float] {
        let count = sequenceOf.count
        let qk = m.queryKeyDimension, rowWidth = m.cacheRowWidth, heads = m.heads
        // q (q-LoRA or plain), per head [q_nope | q_rot].
        var q: [Float]
        var queryLatent: [Float] = []
        if let queryA = w.queryA, let queryB = w.queryB, let norm = w.queryANorm {
            let compressed = project(input, rows: count, weight: queryA, bias: w.queryABias)
            queryLatent = rmsNormed(compressed, weight: norm, rows: count, epsilon: m.latentNormEpsilon)
            q = project(queryLatent, rows: count, weight: queryB)
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
                    if m.latentScale != 1 { for i in 0..<m.keyValueLoraRank { row[i] *= m.latentScale } }
                }
            }
        }
        // LongCat-Flash's LoRA scaling of the query (both its parts).
        if m.queryScale != 1 { for i in q.indices { q[i] *= m.queryScale } }
        if m.rotary { q.withUnsafeMutableBufferPointer { qb in
            latent.withUnsafeMutableBufferPointer { lb in
                for t in 0..<count {
                    rotary.apply(qb.baseAddress! + t * heads * qk + m.nopeDimension, heads: heads, position: ropePositions[t])
                    rotary.apply(lb.baseAddress! + t * rowWidth + m.keyValueLoraRank, heads: 1, position: ropePositions[t])
                }
            }
        } }
        // past_key_values.update, compressed: one [c | k_rot] row per token.
        latent.withUnsafeBufferPointer { lb in
            for t in 0..<count {
                let cache = batch[sequenceOf[t]].cache
                (cache.keys(layer: layer) + positions[t] * m.cacheRowStride).update(from: lb.baseAddress! + t * rowWidth, count: rowWidth)
            }
        }
        // DSA: the indexer's keys join the cache; each token's attended positions are chosen
        // (or, on a shared layer, kept from the last layer that chose them).
        if let x = m.indexer, let iw = w.indexer {
            let step = indexerStep(iw, shape: m, indexer: x, layer: layer, input: input, queryLatent: queryLatent, batch: batch,
                                   sequenceOf: sequenceOf, positions: positions, ropePositions: ropePositions)
            var chosen = [[Int]](repeating: [], count: count)
            chosen.withUnsafeMutableBufferPointer { out in
                parallelChunks(count, minimumChunk: 1) { chunk in
                    for t in chunk {
                        out[t] = indexerSelection(step, token: t, shape: m, indexer: x, layer: layer, cache: batch[sequenceOf[t]].cache,
                                                  position: positions[t])
                    }
                }
            }
            selections = chosen
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
                                  selections: selections, into: &attended)
            } else {
                absorbedAttention(w, shape: m, layer: layer, cache: item.cache, q: q, tokens: tokens, positions: positions,
                                  selections: selections, into: &attended)
            }
        }
        if let gate = w.headGate {  // BailingHybridAttention: attn_output · σ(g_proj(x)) per head
            let scores = project(input, rows: count, weight: gate)
            let v = m.valueDimension
            for t in 0..<count {
                for h in 0..<heads {
                    let factor = sigmoid(scores[t * heads + h])
                    for i in 0..<v { attended[(t * heads + h) * v + i] *= factor }
                }
            }
        }
        return project(attended, rows: count, weight: w.output, bias: w.outputBias)
    }

    /// transformers' form: kv_b_proj over every cached latent of the sequence, then eager
    /// attention with separate key (qk) and value (v) widths.
    private func expandedAttention(
        _ w: LatentAttentionWeights, shape m: LatentAttentionShape, layer: Int, cache: KVCache, q: [Float],
        tokens: Range<Int>, positions: [Int], selections: [[Int]]?, into attended: inout [Float]
    ) {
        let heads = m.heads, qk = m.queryKeyDimension, dv = m.valueDimension, rank = m.keyValueLoraRank
        let length = positions[tokens.upperBound - 1] + 1
        let rows = cache.keys(layer: layer)
        var latents = [Float](repeating: 0, count: length * rank)
        latents.withUnsafeMutableBufferPointer { b in
            for p in 0..<length { (b.baseAddress! + p * rank).update(from: rows + p * m.cacheRowStride, count: rank) }
        }
        var keys = [Float](repeating: 0, count: length * heads * qk)
        var values = [Float](repeating: 0, count: length * heads * dv)
        keys.withUnsafeMutableBufferPointer { k in
            values.withUnsafeMutableBufferPointer { v in
                let key = k.baseAddress!, value = v.baseAddress!
                if let keyValueB = w.keyValueB {
                    let expanded = project(latents, rows: length, weight: keyValueB)  // per head [k_nope | v]
                    expanded.withUnsafeBufferPointer { e in
                        for p in 0..<length {
                            for h in 0..<heads {
                                let source = e.baseAddress! + (p * heads + h) * (m.nopeDimension + dv)
                                (key + (p * heads + h) * qk).update(from: source, count: m.nopeDimension)
                                (value + (p * heads + h) * dv).update(from: source + m.nopeDimension, count: dv)
                            }
                        }
                    }
                } else {
                    // Split storage: k_nope_h = c·W_UK_hᵀ (x·W with the stored W_UK_hᵀ), v_h = W_UV_h·c.
                    latents.withUnsafeBufferPointer { lb in
                        let latent = lb.baseAddress!
                        parallelFor(heads) { h in
                            linearTransposed(latent, tokens: length, inputStride: rank, weight: w.keyUp[h],
                                             into: key + h * qk, outputStride: heads * qk)
                            let perHead = UnsafeMutablePointer<Float>.allocate(capacity: length * dv)
                            defer { perHead.deallocate() }
                            linearSerial(latent, tokens: length, weight: w.valueUp[h], into: perHead)
                            for p in 0..<length { (value + (p * heads + h) * dv).update(from: perHead + p * dv, count: dv) }
                        }
                    }
                }
                for p in 0..<length {
                    for h in 0..<heads {
                        (key + (p * heads + h) * qk + m.nopeDimension).update(from: rows + p * m.cacheRowStride + rank, count: m.ropeDimension)
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
                            // DSA: the selected positions' keys and values, gathered in position order.
                            let keep = selections == nil ? 0 : length
                            let gatheredKeys = UnsafeMutablePointer<Float>.allocate(capacity: max(1, keep * heads * qk))
                            let gatheredValues = UnsafeMutablePointer<Float>.allocate(capacity: max(1, keep * heads * dv))
                            defer {
                                scores.deallocate()
                                gatheredKeys.deallocate()
                                gatheredValues.deallocate()
                            }
                            for i in chunk {
                                let t = tokens.lowerBound + i
                                var keys = key, values = value, attendedLength = positions[t] + 1
                                if let selected = selections?[t] {
                                    for (r, p) in selected.enumerated() {
                                        (gatheredKeys + r * heads * qk).update(from: key + p * heads * qk, count: heads * qk)
                                        (gatheredValues + r * heads * dv).update(from: value + p * heads * dv, count: heads * dv)
                                    }
                                    (keys, values, attendedLength) = (UnsafePointer(gatheredKeys), UnsafePointer(gatheredValues), selected.count)
                                }
                                attendOneToken(
                                    query: query + t * heads * qk, heads: heads, kvHeads: heads, headDimension: qk,
                                    keys: keys, values: values, rowStride: heads * qk, length: attendedLength,
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
        tokens: Range<Int>, positions: [Int], selections: [[Int]]?, into attended: inout [Float]
    ) {
        let heads = m.heads, qk = m.queryKeyDimension, dv = m.valueDimension, rank = m.keyValueLoraRank
        let rowWidth = m.cacheRowWidth, stride = m.cacheRowStride, n = tokens.count
        let longest = positions[tokens.upperBound - 1] + 1
        // q̃ = [q_nope·W_UK | q_rot] per token and head: [n, heads, rank + rope].
        var absorbed = [Float](repeating: 0, count: n * heads * rowWidth)
        // Σ w·c per token and head, head-major so each head's W_UV applies to contiguous rows.
        var pooled = [Float](repeating: 0, count: heads * n * rank)
        q.withUnsafeBufferPointer { qb in
            absorbed.withUnsafeMutableBufferPointer { ab in
                let query = qb.baseAddress! + tokens.lowerBound * heads * qk, out = ab.baseAddress!
                parallelFor(heads) { h in
                    if w.keyUpTransposed {
                        // W_UK_hᵀ stored: q_nope_h·W_UK_h = W_UK_hᵀ·q_nope_h, an ordinary projection
                        // of the head's q_nope rows (gathered, then scattered into q̃).
                        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: n * m.nopeDimension)
                        let projected = UnsafeMutablePointer<Float>.allocate(capacity: n * rank)
                        defer {
                            gathered.deallocate()
                            projected.deallocate()
                        }
                        for i in 0..<n {
                            (gathered + i * m.nopeDimension).update(from: query + i * heads * qk + h * qk, count: m.nopeDimension)
                        }
                        linearSerial(gathered, tokens: n, weight: w.keyUp[h], into: projected)
                        for i in 0..<n { (out + (i * heads + h) * rowWidth).update(from: projected + i * rank, count: rank) }
                    } else {
                        linearTransposed(query + h * qk, tokens: n, inputStride: heads * qk, weight: w.keyUp[h],
                                         into: out + h * rowWidth, outputStride: heads * rowWidth)
                    }
                    for i in 0..<n {
                        (out + (i * heads + h) * rowWidth + rank).update(from: query + i * heads * qk + h * qk + m.nopeDimension,
                                                                      count: m.ropeDimension)
                    }
                }
            }
        }
        let rows = cache.keys(layer: layer)
        // One shared key head of width rank + rope whose value is the latent c: all heads' scores
        // as one product per token (attendSharedHead). With fewer tokens than kernel threads
        // (decode), each token's heads are split between the threads instead.
        let headChunks = n >= Parallelism.threads ? 1 : min(heads, Parallelism.threads)
        let headsPerChunk = (heads + headChunks - 1) / headChunks
        absorbed.withUnsafeBufferPointer { ab in
            pooled.withUnsafeMutableBufferPointer { pb in
                let query = ab.baseAddress!, out = pb.baseAddress!
                parallelChunks(n * headChunks, minimumChunk: max(1, 4096 / max(1, longest))) { jobs in
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: headsPerChunk * longest)
                    let latent = UnsafeMutablePointer<Float>.allocate(capacity: headsPerChunk * rank)
                    let gathered = UnsafeMutablePointer<Float>.allocate(capacity: selections == nil ? 1 : longest * rowWidth)
                    defer {
                        scores.deallocate()
                        latent.deallocate()
                        gathered.deallocate()
                    }
                    for job in jobs {
                        let i = job / headChunks, first = (job % headChunks) * headsPerChunk
                        let count = min(heads, first + headsPerChunk) - first
                        guard count > 0 else { continue }
                        var keys = UnsafePointer(rows), keyStride = stride, length = positions[tokens.lowerBound + i] + 1
                        if let selected = selections?[tokens.lowerBound + i] {
                            // DSA: the selected latent rows, gathered in position order.
                            for (r, p) in selected.enumerated() { (gathered + r * rowWidth).update(from: rows + p * stride, count: rowWidth) }
                            (keys, keyStride, length) = (UnsafePointer(gathered), rowWidth, selected.count)
                        }
                        attendSharedHead(
                            query: query + (i * heads + first) * rowWidth, heads: count, headDimension: rowWidth, keys: keys,
                            rowStride: keyStride, values: keys, valueRowStride: keyStride, valueDimension: rank, length: length,
                            scale: m.softmaxScale, scores: scores, into: latent)
                        for h in 0..<count { (out + ((first + h) * n + i) * rank).update(from: latent + h * rank, count: rank) }
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

/// What one decode token's attention reads from the cache and multiplies, per layer, at a
/// context of `context` cached positions (the context-independent projections left out).
public struct DecodeAttentionWork: Codable, Sendable, Equatable {
    /// Cache bytes read (fp32 rows): every latent row for dense MLA; every indexer key plus
    /// the selected latent rows with sparse attention.
    public var cacheBytes: Int
    /// Multiply-adds over the cache: scores and values of every head over the attended rows
    /// (absorbed form: rank + rope per score, rank per value), plus the indexer's scores.
    public var multiplyAdds: Int
    /// Rows attention runs over.
    public var attendedPositions: Int
}

extension LatentAttentionShape {
    /// The absorbed decode form's work at `context` (what `DecoderModel` runs for one token).
    public func decodeWork(context: Int) -> DecodeAttentionWork {
        let attended = indexer.map { min($0.topK, context + 1) } ?? context + 1
        let rowBytes = cacheRowWidth * MemoryLayout<Float>.size
        var work = DecodeAttentionWork(cacheBytes: attended * rowBytes,
                                       multiplyAdds: heads * attended * (2 * keyValueLoraRank + ropeDimension),
                                       attendedPositions: attended)
        if let x = indexer, context + 1 > x.topK {
            work.cacheBytes += (context + 1) * x.headDimension * MemoryLayout<Float>.size
            work.multiplyAdds += x.heads * (context + 1) * x.headDimension
        }
        return work
    }
}

extension DecoderModel {
    /// One decode token through layer `layer`'s latent attention alone, `input` already
    /// normed, at position `cache.length` (its row written there, not committed, so the call
    /// can repeat): what `jindouctl bench sparse-attention` times.
    public func latentAttentionDecodeStep(layer: Int, input: [Float], cache: KVCache) -> [Float] {
        guard case .latent(let w) = layers[layer].attention, let m = description.latentAttention else {
            preconditionFailure("layer \(layer) has no latent attention")
        }
        cache.reserve(1)
        var selections: [[Int]]? = nil
        return latentAttention(w, shape: m, layer: layer, input: input, batch: [SequenceStep(cache: cache, tokens: [0])],
                               sequenceOf: [0], positions: [cache.length], ropePositions: [cache.length], selections: &selections)
    }
}

