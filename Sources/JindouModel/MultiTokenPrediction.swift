// Multi-token prediction (MTP) drafts for speculative decoding, mirroring transformers'
// `modeling_layers.py` (`MtpLayer`, `MtpModel.forward_layer`, `_project_to_logits`) and the
// way `generation/candidate_generator.py` (`MTPCandidateGenerator`) drives it:
//   MtpLayer.forward:  eh_proj([enorm(embed_tokens(x_{t+1})) | hnorm(h_t)]) → the block (a
//                      whole decoder layer: attention + MoE) → post_norm (`shared_head.norm`)
//   logits:            the main model's lm_head (embedding and head are shared with it)
//   h_t:               the main model's last hidden state after its final norm
//                      (`outputs.hidden_states[-1]`)
//   positions:         the pair (h_t, x_{t+1}) sits at position t + 1, in the MTP block's
//                      own KV cache (`MtpCache`), one row per pair.
// DeepSeek-V3/V3.1/Kimi-K2 and GLM-4.5+ store the layer at index num_hidden_layers
// (`num_nextn_predict_layers` = 1): `model.layers.L.{enorm,hnorm,eh_proj,shared_head.norm}`
// plus the block's usual tensors and its routed experts, which run here, on the coordinator,
// never on workers. More drafts than MTP layers chain the one layer on its own output, as
// transformers chains its layers (the output after post_norm is the next pair's h).

import JindouNumerics

/// The checkpoint's MTP layer, loaded only when `--speculative mtp` asks for it.
public struct MultiTokenPredictor: Sendable {
    /// The layer's index in the checkpoint (the number of decoder layers).
    public let layerIndex: Int
    let embedNorm: [Float]
    let hiddenNorm: [Float]
    let projection: WeightMatrix
    let block: DecoderLayerWeights
    let postNorm: [Float]
    /// The block's routed experts (all of them, in this process).
    let experts: ExpertShard
    let tensors: TensorSet

    /// Maps the MTP layer of `checkpoint` (nothing else). Throws when the checkpoint has none.
    public init(description: ModelDescription, checkpoint: any WeightSource, denseFormat: BlockFormat? = nil) throws {
        guard description.ignoredPredictionLayers > 0 else {
            throw EngineError.invalidParameter(
                name: "speculative", reason: "mtp needs the checkpoint's multi-token-prediction layers; \(checkpoint.path) has none (num_nextn_predict_layers is 0)")
        }
        let l = description.layerCount
        layerIndex = l
        let kind: FeedForwardKind = description.layers.last ?? .sparse
        let names = description.predictionNames, h = description.hiddenSize
        let p = names.ownPrefix ?? description.layerPrefix(l)
        let own = [TensorRequest(p + names.embeddingNorm, shape: [h]), TensorRequest(p + names.hiddenNorm, shape: [h]),
                   TensorRequest(p + names.projection, shape: [h, 2 * h]), TensorRequest(p + names.outputNorm, shape: [h])]
        if (try? checkpoint.byteCount(of: [own[2]])) == nil {
            throw EngineError.invalidParameter(
                name: "speculative", reason: "mtp needs the checkpoint's multi-token-prediction layer; \(checkpoint.path) has no '\(own[2].name)' (transformers' save_pretrained drops Qwen3-Next's mtp.* tensors; the released checkpoints have them)")
        }
        tensors = try checkpoint.load(own + description.layerTensors(l, kind: kind))
        let loader = LayerLoader(description: description, tensors: tensors, path: checkpoint.path, denseFormat: denseFormat)
        // Zero-centred (1 + w) where the model's norms are (Qwen3-Next).
        embedNorm = try loader.normWeight(p + names.embeddingNorm)
        hiddenNorm = try loader.normWeight(p + names.hiddenNorm)
        projection = try loader.dense(p + names.projection)
        postNorm = try loader.normWeight(p + names.outputNorm)
        block = try loader.layer(l, kind: kind)
        let keys = kind == .sparse ? (0..<description.expertCount).map { ExpertKey(layer: l, expert: $0) } : []
        experts = try ExpertShard(description: description, checkpoint: checkpoint, keys: keys)
    }

    /// Every mapping the layer holds.
    public var mappedRegions: [MappedRegion] { tensors.regions + experts.tensors.regions }

    /// Reads every page of the layer's mappings once (progress bar on a terminal).
    public func prefault(label: String) { TensorSet(tensors: [:], regions: mappedRegions).prefault(label: label) }

    /// A fresh MTP cache for one sequence (one layer, the main model's row widths).
    public func makeCache(for model: DecoderModel) -> KVCache {
        let widths = model.description.keyValueCacheWidths
        return KVCache(layerCount: 1, keyWidth: widths.keys, valueWidth: widths.values)
    }

    /// One sequence's pairs for one pass: the tokens x_{t+1} and the rows h_t before them.
    struct Pass {
        let cache: KVCache
        let tokens: [Int]
        /// `tokens.count × hidden`, the main model's (or this layer's) normed hidden rows.
        let previous: [Float]
    }

    /// Runs the layer over each sequence's pairs, appending them to its cache; returns per
    /// sequence the logits and the post-norm hidden state of its last pair.
    func forward(_ passes: [Pass], model: DecoderModel) async throws -> [(logits: [Float], hidden: [Float])] {
        let h = model.description.hiddenSize
        let count = passes.reduce(0) { $0 + $1.tokens.count }
        guard count > 0 else { return passes.map { _ in ([], []) } }
        let tokens = passes.flatMap(\.tokens)
        var embedded = [Float](repeating: 0, count: count * h)
        embedded.withUnsafeMutableBufferPointer { out in
            for (t, token) in tokens.enumerated() { model.embedding.widenRows(token..<(token + 1), into: out.baseAddress! + t * h) }
        }
        let e = model.rmsNormed(embedded, weight: embedNorm, rows: count)
        let previous = model.rmsNormed(passes.flatMap(\.previous), weight: hiddenNorm, rows: count)
        var joined = [Float](repeating: 0, count: count * 2 * h)
        for t in 0..<count {
            joined.replaceSubrange((t * 2 * h)..<(t * 2 * h + h), with: e[(t * h)..<((t + 1) * h)])
            joined.replaceSubrange((t * 2 * h + h)..<((t + 1) * 2 * h), with: previous[(t * h)..<((t + 1) * h)])
        }
        var x = model.project(joined, rows: count, weight: projection)
        let steps = passes.map { pass -> SequenceStep in
            var step = SequenceStep(cache: pass.cache, tokens: pass.tokens)
            step.positionOffset = 1
            return step
        }
        let layout = DecoderModel.StepLayout(steps)
        var selections: [[Int]]? = nil
        try await model.decoderLayer(block, cacheLayer: 0, expertLayer: layerIndex, hidden: &x, batch: steps, layout: layout,
                                     experts: experts, selections: &selections)
        for pass in passes { pass.cache.commit(pass.tokens.count) }
        // post_norm and the shared head, for each sequence's last pair only.
        var results: [(logits: [Float], hidden: [Float])] = []
        var end = 0
        for pass in passes {
            end += pass.tokens.count
            guard !pass.tokens.isEmpty else {
                results.append(([], []))
                continue
            }
            let last = model.rmsNormed(Array(x[((end - 1) * h)..<(end * h)]), weight: postNorm, rows: 1)
            results.append((model.project(last, rows: 1, weight: model.lmHead), last))
        }
        return results
    }

    /// The logits of every pair (tests against transformers' goldens).
    func allLogits(cache: KVCache, tokens: [Int], previous: [Float], model: DecoderModel) async throws -> [[Float]] {
        var rows: [[Float]] = []
        let h = model.description.hiddenSize
        for t in tokens.indices {
            rows.append(try await forward([Pass(cache: cache, tokens: [tokens[t]], previous: Array(previous[(t * h)..<((t + 1) * h)]))],
                                          model: model)[0].logits)
        }
        return rows
    }
}

/// A sequence's MTP state: its cache and how much of it holds verified pairs (the rest are
/// chained drafts, dropped before the next pass).
public final class MultiTokenDraftState: @unchecked Sendable {
    // @unchecked: owned by one sequence, touched by one step at a time.
    let cache: KVCache
    var verified = 0

    init(cache: KVCache) { self.cache = cache }
}

extension MultiTokenPredictor {
    /// One sequence's work for `propose`: the main model's normed hidden rows of the
    /// positions it just verified, the tokens that followed each, and how many drafts to make.
    public struct Verified: Sendable {
        public let state: MultiTokenDraftState
        public let hidden: [Float]
        public let nextTokens: [Int]
        public let drafts: Int

        public init(state: MultiTokenDraftState, hidden: [Float], nextTokens: [Int], drafts: Int) {
            self.state = state
            self.hidden = hidden
            self.nextTokens = nextTokens
            self.drafts = drafts
        }
    }

    public func makeState(for model: DecoderModel) -> MultiTokenDraftState { MultiTokenDraftState(cache: makeCache(for: model)) }

    /// Appends each sequence's verified pairs (forgetting its chained drafts first), then
    /// drafts greedily — one pass for the first draft of every sequence, one more per
    /// further draft. Returns each sequence's drafts.
    public func propose(_ work: [Verified], model: DecoderModel) async throws -> [[Int]] {
        for item in work {
            item.state.cache.truncate(to: item.state.verified)
            item.state.verified += item.nextTokens.count
        }
        var outputs = try await forward(work.map { Pass(cache: $0.state.cache, tokens: $0.nextTokens, previous: $0.hidden) }, model: model)
        var drafts = work.map { _ in [Int]() }
        var round = 0
        while true {
            let active = work.indices.filter { work[$0].drafts > round && !outputs[$0].logits.isEmpty }
            guard !active.isEmpty else { break }
            for i in active { drafts[i].append(Sampler.argmax(outputs[i].logits)) }
            round += 1
            let chained = active.filter { work[$0].drafts > round }
            guard !chained.isEmpty else { break }
            let next = try await forward(chained.map { Pass(cache: work[$0].state.cache, tokens: [drafts[$0].last!], previous: outputs[$0].hidden) },
                                         model: model)
            for (j, i) in chained.enumerated() { outputs[i] = next[j] }
            for i in active where !chained.contains(i) { outputs[i] = ([], []) }
        }
        return drafts
    }
}
