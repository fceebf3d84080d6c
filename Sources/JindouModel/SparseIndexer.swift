// DeepSeek Sparse Attention's lightning indexer (`DeepseekV32Indexer.forward`), per layer:
//   q_h   = wq_b(q_resid) per head h (index_n_heads × index_head_dim), q_resid the q-LoRA
//           latent q_a_layernorm(q_a_proj(x)) MLA's query starts from
//   k     = LayerNorm(wk(x))  (one key per token, index_head_dim, with bias)
//   rotary, half-split (not MLA's interleaved pairs), on the first qk_rope_head_dim features
//   of every q_h and of k, at the token's position
//   w_h   = weights_proj(x)_h / √index_n_heads
//   score(t, j) = Σ_h w_h · relu(q_h·k_j / √index_head_dim)   for the causal positions j ≤ t
// and attention for t runs over its `index_topk` best-scoring positions only (all of them
// while there are no more). The keys k are cached per token beside the latent row
// (`LatentAttentionShape.cacheRowStride`), so a decode step scores the whole past without
// recomputing it; the selection is recomputed per query, as transformers does.

import Foundation
import JindouNumerics

/// `DeepseekV32Indexer`'s weights.
public struct SparseIndexerWeights: Sendable {
    public let queryB: WeightMatrix
    public let key: WeightMatrix
    public let keyNormWeight: [Float]
    public let keyNormBias: [Float]
    public let headWeights: WeightMatrix

    init(prefix p: String, dense: (String) throws -> WeightMatrix, vector: (String) throws -> [Float]) throws {
        queryB = try dense(p + "indexer.wq_b.weight")
        key = try dense(p + "indexer.wk.weight")
        keyNormWeight = try vector(p + "indexer.k_norm.weight")
        keyNormBias = try vector(p + "indexer.k_norm.bias")
        headWeights = try dense(p + "indexer.weights_proj.weight")
    }
}

/// One step's indexer queries and head weights (keys go straight into the cache).
struct IndexerQueries {
    /// [tokens, heads × headDimension], rotated.
    var queries: [Float]
    /// [tokens, heads], already divided by √heads.
    var weights: [Float]
}

extension DecoderModel {
    /// The indexer's rotary: MLA's frequencies and attention factor, on half-split pairs
    /// (DeepSeek-V3.2) or interleaved pairs (GLM-5) of the first `ropeDimension` features of
    /// each `headDimension`-wide head.
    func indexerRotary(_ x: SparseIndexerShape) -> RotaryEmbedding {
        // The frequencies are MLA's own (YaRN included); `base` is then not used.
        RotaryEmbedding(headDimension: x.headDimension, rotaryDimension: x.ropeDimension, base: description.attention.ropeTheta,
                        attentionScaling: rotary.attentionScaling, inverseFrequencies: rotary.inverseFrequencies, interleaved: x.interleavedRotary)
    }

    /// Computes the step's indexer queries and weights, and writes each token's indexer key
    /// into its sequence's cache row after the latent (`cacheRowWidth` onwards).
    func indexerStep(
        _ w: SparseIndexerWeights, shape m: LatentAttentionShape, indexer x: SparseIndexerShape, layer: Int, input: [Float],
        queryLatent: [Float], batch: [SequenceStep], sequenceOf: [Int], positions: [Int], ropePositions: [Int]
    ) -> IndexerQueries {
        let count = sequenceOf.count
        let rope = indexerRotary(x)
        var queries = project(queryLatent, rows: count, weight: w.queryB)
        var keys = project(input, rows: count, weight: w.key)
        var weights = project(input, rows: count, weight: w.headWeights)
        let headScale = 1 / Float(x.heads).squareRoot()
        for i in weights.indices { weights[i] *= headScale }
        keys.withUnsafeMutableBufferPointer { kb in
            w.keyNormWeight.withUnsafeBufferPointer { nw in
                w.keyNormBias.withUnsafeBufferPointer { nb in
                    layerNorm(kb.baseAddress!, rows: count, width: x.headDimension, weight: nw.baseAddress!, bias: nb.baseAddress!,
                              epsilon: x.keyNormEpsilon, into: kb.baseAddress!)
                }
            }
        }
        queries.withUnsafeMutableBufferPointer { qb in
            keys.withUnsafeMutableBufferPointer { kb in
                for t in 0..<count {
                    rope.apply(qb.baseAddress! + t * x.heads * x.headDimension, heads: x.heads, position: ropePositions[t])
                    rope.apply(kb.baseAddress! + t * x.headDimension, heads: 1, position: ropePositions[t])
                }
            }
        }
        keys.withUnsafeBufferPointer { kb in
            for t in 0..<count {
                let row = batch[sequenceOf[t]].cache.keys(layer: layer) + positions[t] * m.cacheRowStride + m.cacheRowWidth
                row.update(from: kb.baseAddress! + t * x.headDimension, count: x.headDimension)
            }
        }
        return IndexerQueries(queries: queries, weights: weights)
    }

    /// The positions token `t` attends to: the `topK` best index scores among positions
    /// 0...positions[t] of its sequence (ties to the earlier position), ascending; every
    /// position while there are at most `topK`.
    func indexerSelection(
        _ q: IndexerQueries, token t: Int, shape m: LatentAttentionShape, indexer x: SparseIndexerShape, layer: Int, cache: KVCache,
        position: Int
    ) -> [Int] {
        let length = position + 1
        if length <= x.topK { return Array(0..<length) }
        var scores = [Float](repeating: 0, count: length)
        q.queries.withUnsafeBufferPointer { qb in
            q.weights.withUnsafeBufferPointer { wb in
                scores.withUnsafeMutableBufferPointer { sb in
                    indexScores(query: qb.baseAddress! + t * x.heads * x.headDimension, weights: wb.baseAddress! + t * x.heads,
                                keys: cache.keys(layer: layer) + m.cacheRowWidth, stride: m.cacheRowStride, length: length, indexer: x,
                                into: sb.baseAddress!)
                }
            }
        }
        return largestIndices(scores, count: x.topK).sorted()
    }
}

/// score(j) = Σ_h w_h · relu(q_h·k_j / √D) for j in 0..<length: per block of keys, one
/// matrix product (heads × D by D × block, the keys read in place from the cache rows)
/// then the weighted ReLU sum over heads in head order; blocks run on the kernel threads.
func indexScores(
    query: UnsafePointer<Float>, weights: UnsafePointer<Float>, keys: UnsafePointer<Float>, stride: Int, length: Int,
    indexer x: SparseIndexerShape, into scores: UnsafeMutablePointer<Float>
) {
    let block = 512, heads = x.heads
    let blocks = (length + block - 1) / block
    parallelChunks(blocks, minimumChunk: 4) { chunk in
        let products = UnsafeMutablePointer<Float>.allocate(capacity: heads * block)
        defer { products.deallocate() }
        for b in chunk {
            let start = b * block, n = min(block, length - b * block)
            matmulTransposedB(query, rows: heads, keys + start * stride, rows: n, inner: x.headDimension, lda: x.headDimension,
                              ldb: stride, into: products, ldc: n, alpha: 1 / Float(x.headDimension).squareRoot())
            let out = scores + start
            out.update(repeating: 0, count: n)
            for h in 0..<heads {
                let w = weights[h], row = products + h * n
                for j in 0..<n { out[j] += w * max(0, row[j]) }
            }
        }
    }
}

extension DecoderModel {
    /// The indexer's share of `latentAttentionDecodeStep` (the q-LoRA projection it starts
    /// from, its own projections, the scores over every cached key, the top-k): what
    /// `jindouctl bench sparse-attention` reports beside the whole step.
    public func indexerDecodeSelection(layer: Int, input: [Float], cache: KVCache) -> [Int] {
        guard case .latent(let w) = layers[layer].attention, let m = description.latentAttention, let x = m.indexer,
              let iw = w.indexer, let queryA = w.queryA, let norm = w.queryANorm else {
            preconditionFailure("layer \(layer) has no sparse-attention indexer")
        }
        cache.reserve(1)
        let position = cache.length
        let queryLatent = rmsNormed(project(input, rows: 1, weight: queryA, bias: w.queryABias), weight: norm, rows: 1,
                                    epsilon: m.latentNormEpsilon)
        let step = indexerStep(iw, shape: m, indexer: x, layer: layer, input: input, queryLatent: queryLatent,
                               batch: [SequenceStep(cache: cache, tokens: [0])], sequenceOf: [0], positions: [position],
                               ropePositions: [position])
        return indexerSelection(step, token: 0, shape: m, indexer: x, layer: layer, cache: cache, position: position)
    }
}
