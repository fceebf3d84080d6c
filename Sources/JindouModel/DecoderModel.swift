// The decoder stack shared by Qwen3-MoE, GLM4-MoE and DeepSeek-V3, block by block as in
// `modeling_qwen3_moe.py` / `modeling_glm4_moe.py` / `modeling_deepseek_v3.py`:
//   Model.forward:        embed_tokens → layers → norm → lm_head
//   DecoderLayer.forward: h += self_attn(input_layernorm(h)); h += mlp(post_attention_layernorm(h))
//   Attention.forward:    q/k/v proj (+bias) → q_norm/k_norm per head → rotary → cache
//                         update → eager attention (softmax(q·kᵀ·scale + causal mask)·v) → o_proj
//                         (DeepSeek-V3: Multi-head Latent Attention, LatentAttention.swift)
//   SparseMoeBlock:       gate → experts (routed, via `ExpertBackend`) [+ shared_experts]
//   MLP:                  down_proj(silu(gate_proj(x)) * up_proj(x))
// Everything except routed experts lives here: this is what the coordinator holds.

import Foundation
import JindouNumerics
import JindouRouting

/// q/k/v/o projections of one attention block.
public struct AttentionWeights: Sendable {
    public let query: WeightMatrix
    public let key: WeightMatrix
    public let value: WeightMatrix
    public let output: WeightMatrix
    public let queryBias: [Float]?
    public let keyBias: [Float]?
    public let valueBias: [Float]?
    public let outputBias: [Float]?
    public let queryNorm: [Float]?
    public let keyNorm: [Float]?
    /// Per head, the attention sink's logit (gpt-oss).
    public var sinks: [Float]? = nil
    /// The output gate's projection (`AttentionShape.outputGate`).
    public var outputGate: WeightMatrix? = nil
}

/// A dense SwiGLU MLP (dense layers and shared experts).
public struct MLPWeights: Sendable {
    public let gate: WeightMatrix
    public let up: WeightMatrix
    public let down: WeightMatrix
    /// A [1, hidden] Linear whose sigmoid scales the output per token (Qwen3-Next's
    /// `shared_expert_gate`); nil: none.
    public var outputGate: WeightMatrix? = nil

    public init(gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix) {
        self.gate = gate
        self.up = up
        self.down = down
    }
}

/// A layer's feed-forward block.
public enum FeedForwardWeights: Sendable {
    case dense(MLPWeights)
    /// Router and optional shared experts here; routed experts live behind an `ExpertBackend`.
    case sparse(router: Router, shared: MLPWeights?)
}

/// A layer's attention block.
public enum AttentionBlockWeights: Sendable {
    /// Grouped-query attention (Qwen3-MoE, GLM4-MoE).
    case grouped(AttentionWeights)
    /// Multi-head Latent Attention (DeepSeek-V3, Kimi-K2).
    case latent(LatentAttentionWeights)
    /// Gated DeltaNet linear attention (Qwen3-Next), with a fixed-size state per sequence.
    case linear(GatedDeltaNetWeights)
}

public struct DecoderLayerWeights: Sendable {
    public let inputNorm: [Float]
    /// The norm before the feed-forward block (`post_attention_layernorm` in pre-norm layers).
    public let postAttentionNorm: [Float]
    /// Sandwich norms on the attention and feed-forward outputs (`LayerNormNames`).
    public var attentionOutputNorm: [Float]? = nil
    public var feedForwardOutputNorm: [Float]? = nil
    public let attention: AttentionBlockWeights
    public let feedForward: FeedForwardWeights
    /// LongCat-Flash's shortcut-connected layer: the first sub-block's dense MLP and the whole
    /// second sub-block; `feedForward` is then the routed MoE reading the first sub-block's
    /// post-attention norm, added at the layer's end.
    public var shortcut: ShortcutSublayerWeights? = nil
}

/// `LongcatFlashDecoderLayer`'s parts besides sub-block 0's norms and attention.
public struct ShortcutSublayerWeights: Sendable {
    /// `mlps.0`.
    public let firstMLP: MLPWeights
    /// `input_layernorm.1`, `self_attn.1`, `post_attention_layernorm.1`, `mlps.1`.
    public let inputNorm: [Float]
    public let attention: AttentionBlockWeights
    public let postAttentionNorm: [Float]
    public let mlp: MLPWeights
}

/// Which logits a step returns for a sequence.
public enum LogitsSelection: Sendable {
    case none
    /// The last token of the step (decoding).
    case last
    /// Every token of the step (scoring, tests against prefill goldens).
    case all
}

/// One sequence's part of a step: new tokens appended to its cache.
public struct SequenceStep: Sendable {
    public let cache: KVCache
    public let tokens: [Int]
    public let expertsPerToken: ExpertsPerToken
    public let logits: LogitsSelection
    /// Image features and M-RoPE positions of the sequence's prompt (vision-language models).
    public let multimodal: MultimodalPrompt?
    /// Added to a token's cache row to give its rotary position (an MTP block's cache row j
    /// holds the pair for position j + 1).
    public var positionOffset = 0
    /// Which rows' final-normed hidden states `forwardReturningHidden` returns (MTP drafts
    /// start from them).
    public var hidden: LogitsSelection = .none

    public init(cache: KVCache, tokens: [Int], expertsPerToken: ExpertsPerToken = .configured, logits: LogitsSelection = .last,
                multimodal: MultimodalPrompt? = nil) {
        self.cache = cache
        self.tokens = tokens
        self.expertsPerToken = expertsPerToken
        self.logits = logits
        self.multimodal = multimodal
    }
}

/// Errors about a request's input that the caller can fix.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    case emptyPrompt
    case tokenOutOfRange(token: Int, vocabularySize: Int)
    case invalidParameter(name: String, reason: String)

    public var description: String {
        switch self {
        case .emptyPrompt: "the prompt has no tokens"
        case .tokenOutOfRange(let token, let vocabularySize):
            "token id \(token) is out of range for a vocabulary of \(vocabularySize)"
        case .invalidParameter(let name, let reason): "\(name): \(reason)"
        }
    }
}

/// Every non-expert weight of a model, and the forward pass over a batch of sequences.
public struct DecoderModel: Sendable {
    public let description: ModelDescription
    public let embedding: WeightMatrix
    public let finalNorm: [Float]
    public let lmHead: WeightMatrix
    public let layers: [DecoderLayerWeights]
    public let rotary: RotaryEmbedding
    /// The loaded tensors (keeps mappings alive; reports mapped bytes).
    public let tensors: TensorSet
    /// How Multi-head Latent Attention is computed (no effect on other attention).
    public var latentAttentionMode: LatentAttentionMode = .automatic
    /// How the linear-attention layers' delta rule is computed (no effect on other layers).
    public var deltaRuleForm: DeltaRuleForm = .automatic
    /// The vision tower of a vision-language checkpoint (runs where this model runs).
    public let vision: VisionTower?

    /// Loads the non-expert tensors of `checkpoint` (nothing else is mapped). With
    /// `denseFormat`, the attention projections (MLA's too), dense and shared MLPs and the LM
    /// head are re-encoded (Q8_0, Q4_K) when their width is a whole number of blocks;
    /// embeddings, routers and MLA's up-projections from the latent (kv_b_proj) stay in the
    /// checkpoint's dtype, and so does a matrix a GGUF file already stores block-quantised.
    public init(description: ModelDescription, checkpoint: any WeightSource, denseFormat: BlockFormat? = nil) throws {
        let tensors = try checkpoint.load(description.nonExpertTensors())
        let loader = LayerLoader(description: description, tensors: tensors, path: checkpoint.path, denseFormat: denseFormat)
        self.description = description
        self.tensors = tensors
        embedding = try loader.matrix(description.embeddingName)
        finalNorm = try loader.normWeight(description.finalNormName)
        lmHead = loader.encoded(description.tieWordEmbeddings ? embedding : try loader.matrix(description.lmHeadName))
        rotary = description.makeRotaryEmbedding()
        layers = try description.layers.enumerated().map { try loader.layer($0, kind: $1) }
        vision = try description.vision.map { try VisionTower(shape: $0, checkpoint: checkpoint) }
    }

    /// Every mapping this model holds (text weights and the vision tower's).
    public var mappedRegions: [MappedRegion] { tensors.regions + (vision?.tensors.regions ?? []) }

    /// Reads every page of every mapping once (progress bar on a terminal).
    public func prefaultWeights(label: String) {
        TensorSet(tensors: [:], regions: mappedRegions).prefault(label: label)
    }

    /// A fresh KV cache for one sequence.
    /// With `maxPositions`, full-attention layers are mapped (see KVCache), so kept
    /// prefixes can be shared with it instead of copied.
    public func makeCache(maxPositions: Int? = nil) -> KVCache {
        let widths = description.keyValueCacheWidths
        return KVCache(layerCount: description.cacheLayerCount, keyWidth: widths.keys, valueWidth: widths.values,
                       windows: description.cacheWindows, maxPositions: maxPositions, stateWidths: description.layerStateFloats)
    }

    /// The router of the first sparse layer (all share one configuration).
    public var anyRouter: Router? {
        for layer in layers { if case .sparse(let router, _) = layer.feedForward { return router } }
        return nil
    }

    /// `forward` that also returns, per sequence, the final-normed hidden states of the rows
    /// its `hidden` selects (row-major, `hiddenSize` wide), for MTP drafts. Not split into
    /// micro-batches.
    public func forwardReturningHidden(_ batch: [SequenceStep], experts: any ExpertBackend) async throws
        -> (logits: [[Float]], hidden: [[Float]]) {
        try validate(batch)
        let output = try await experts.step { try await self.forwardStep(batch, experts: experts, returnHidden: true) }
        return (output.logits, output.hidden)
    }

    /// Checks a step's inputs without touching any cache.
    public func validate(_ batch: [SequenceStep]) throws {
        for item in batch {
            for token in item.tokens where token < 0 || token >= description.vocabularySize {
                throw EngineError.tokenOutOfRange(token: token, vocabularySize: description.vocabularySize)
            }
            if let router = anyRouter {
                do { try router.validate(item.expertsPerToken) } catch let error as RoutingError {
                    throw EngineError.invalidParameter(name: "experts_per_token", reason: error.description)
                }
            }
        }
    }

    /// Runs one step: appends each sequence's tokens to its cache and returns, per
    /// sequence, the logits it asked for (row-major, `vocabularySize` wide). With
    /// `microBatches`, the step's sequences run as concurrent micro-batches that overlap
    /// one another's expert round trips (`MicroBatching`); the results are the same.
    public func forward(_ batch: [SequenceStep], experts: any ExpertBackend,
                        microBatches: MicroBatching = .fixed(1)) async throws -> [[Float]] {
        try validate(batch)
        let groups = microBatches.groups(tokenCounts: batch.map(\.tokens.count), remoteExperts: experts.isRemote)
        guard groups.count > 1 else { return try await experts.step { try await self.forwardStep(batch, experts: experts) } }
        let parts = try await withThrowingTaskGroup(of: (Int, [[Float]]).self) { group in
            for (g, indices) in groups.enumerated() {
                let part = indices.map { batch[$0] }
                group.addTask { (g, try await experts.step { try await self.forwardStep(part, experts: experts) }) }
            }
            var parts = [[[Float]]](repeating: [], count: groups.count)
            for try await (g, logits) in group { parts[g] = logits }
            return parts
        }
        var results = [[Float]](repeating: [], count: batch.count)
        for (indices, logits) in zip(groups, parts) {
            for (s, rows) in zip(indices, logits) { results[s] = rows }
        }
        return results
    }

    /// A step's per-token bookkeeping: which sequence each token belongs to, its cache
    /// row, its rotary position (t, h, w) and its image row (-1 for text).
    struct StepLayout {
        var sequenceOf: [Int] = [], positions: [Int] = [], ropePositions: [SIMD3<Int>] = [], visualRows: [Int] = []
        var expertsPerToken: [ExpertsPerToken] = []
        var count: Int { sequenceOf.count }

        init(_ batch: [SequenceStep]) {
            let count = batch.reduce(0) { $0 + $1.tokens.count }
            sequenceOf.reserveCapacity(count)
            positions.reserveCapacity(count)
            ropePositions.reserveCapacity(count)
            for (s, item) in batch.enumerated() {
                item.cache.reserve(item.tokens.count)
                for i in item.tokens.indices {
                    let position = item.cache.length + i
                    sequenceOf.append(s)
                    positions.append(position)
                    let rope = position + item.positionOffset
                    ropePositions.append(item.multimodal?.ropePosition(at: rope) ?? SIMD3(repeating: rope))
                    visualRows.append(item.multimodal?.visualRow(at: position) ?? -1)
                }
            }
            expertsPerToken = sequenceOf.map { batch[$0].expertsPerToken }
        }
    }

    /// The rows a step's final norm and LM head see, and what to return for them.
    struct StepOutput {
        var logits: [[Float]]
        /// Per sequence, the selected rows of the final-normed hidden states (when asked).
        var hidden: [[Float]]
    }

    private func forwardStep(_ batch: [SequenceStep], experts: any ExpertBackend) async throws -> [[Float]] {
        try await forwardStep(batch, experts: experts, returnHidden: false).logits
    }

    func forwardStep(_ batch: [SequenceStep], experts: any ExpertBackend, returnHidden: Bool) async throws -> StepOutput {
        let h = description.hiddenSize
        let tokens = batch.flatMap(\.tokens)
        let count = tokens.count
        if count == 0 { return StepOutput(logits: batch.map { _ in [] }, hidden: batch.map { _ in [] }) }
        let layout = StepLayout(batch)

        // embed_tokens
        var hidden = [Float](repeating: 0, count: count * h)
        hidden.withUnsafeMutableBufferPointer { out in
            // One row each, dequantised when the embedding is block-quantised (GGUF).
            for (t, token) in tokens.enumerated() { embedding.widenRows(token..<(token + 1), into: out.baseAddress! + t * h) }
            if let scale = description.embeddingScale { for i in 0..<out.count { out[i] *= scale } }
        }
        // Image tokens take the vision tower's merged features instead (masked_scatter).
        for t in 0..<count where layout.visualRows[t] >= 0 {
            let prompt = batch[layout.sequenceOf[t]].multimodal!
            hidden.replaceSubrange((t * h)..<((t + 1) * h), with: prompt.embeddings[(layout.visualRows[t] * h)..<((layout.visualRows[t] + 1) * h)])
        }

        var selections: [[Int]]? = nil
        for (l, layer) in layers.enumerated() {
            try await decoderLayer(layer, cacheLayer: l, expertLayer: l, hidden: &hidden, batch: batch, layout: layout, experts: experts,
                                   selections: &selections)
            // DeepStack: image tokens get level l's vision features after text layer l.
            for t in 0..<count where layout.visualRows[t] >= 0 {
                let prompt = batch[layout.sequenceOf[t]].multimodal!
                guard l < prompt.deepstack.count else { continue }
                let row = layout.visualRows[t] * h
                prompt.deepstack[l].withUnsafeBufferPointer { features in
                    hidden.withUnsafeMutableBufferPointer { out in
                        for i in 0..<h { out[t * h + i] += features[row + i] }
                    }
                }
            }
        }
        for item in batch { item.cache.commit(item.tokens.count) }

        // norm → lm_head, only for the rows asked for.
        var output = StepOutput(logits: [], hidden: [])
        var start = 0
        func rows(_ selection: LogitsSelection, _ tokens: Int) -> Range<Int> {
            switch selection {
            case .none: start..<start
            case .last: (start + tokens - 1)..<(start + tokens)
            case .all: start..<(start + tokens)
            }
        }
        func normed(_ rows: Range<Int>) -> [Float] {
            rows.isEmpty ? [] : rmsNormed(Array(hidden[(rows.lowerBound * h)..<(rows.upperBound * h)]), weight: finalNorm, rows: rows.count)
        }
        for item in batch {
            let logitRows = rows(item.logits, item.tokens.count)
            let hiddenRows = rows(returnHidden ? item.hidden : .none, item.tokens.count)
            start += item.tokens.count
            let forLogits = normed(logitRows)
            output.logits.append(logitRows.isEmpty ? [] : project(forLogits, rows: logitRows.count, weight: lmHead))
            output.hidden.append(hiddenRows == logitRows ? forLogits : normed(hiddenRows))
        }
        return output
    }

    /// One `DecoderLayer.forward` over a step's tokens: `hidden` += self_attn(input_layernorm),
    /// then += mlp(post_attention_layernorm). `cacheLayer` is the KV-cache layer the
    /// attention reads and writes, `expertLayer` the layer whose routed experts serve it
    /// (they differ for an MTP block, which has a cache of its own).
    /// `selections`: sparse attention's chosen positions per token, from the last layer whose
    /// indexer ran in this step (SparseIndexer.swift).
    func decoderLayer(_ layer: DecoderLayerWeights, cacheLayer l: Int, expertLayer: Int, hidden: inout [Float], batch: [SequenceStep],
                      layout: StepLayout, experts: any ExpertBackend, selections: inout [[Int]]?) async throws {
        if let shortcut = layer.shortcut {
            return try await shortcutDecoderLayer(layer, shortcut, index: expertLayer, hidden: &hidden, batch: batch, layout: layout,
                                                  experts: experts)
        }
        let h = description.hiddenSize, count = layout.count
        var normed = rmsNormed(hidden, weight: layer.inputNorm, rows: count)
        let attended = attend(layer.attention, cacheLayer: l, input: normed, batch: batch, layout: layout, selections: &selections)
        add(layer.attentionOutputNorm.map { rmsNormed(attended, weight: $0, rows: count) } ?? attended, into: &hidden)
        normed = rmsNormed(hidden, weight: layer.postAttentionNorm, rows: count)
        switch layer.feedForward {
        case .dense(let mlp):
            let output = self.mlp(mlp, input: normed, rows: count)
            add(layer.feedForwardOutputNorm.map { rmsNormed(output, weight: $0, rows: count) } ?? output, into: &hidden)
        case .sparse(let router, let shared):
            let input = normed
            async let routedOutput = moe(router: router, layer: expertLayer, input: input, layout: layout, experts: experts)
            // Shared experts run while the routed experts are computed (remotely, in a cluster).
            let sharedOutput = shared.map { self.mlp($0, input: normed, rows: count) }
            var moeOutput = try await routedOutput
            if let sharedOutput { add(sharedOutput, into: &moeOutput) }
            add(layer.feedForwardOutputNorm.map { rmsNormed(moeOutput, weight: $0, rows: count) } ?? moeOutput, into: &hidden)
        }
    }

    /// The layer's attention block over `input` (already normed), reading and writing KV-cache layer `l`.
    func attend(_ block: AttentionBlockWeights, cacheLayer l: Int, input: [Float], batch: [SequenceStep], layout: StepLayout,
                selections: inout [[Int]]?) -> [Float] {
        switch block {
        case .grouped(let weights):
            return attention(weights, layer: l, input: input, batch: batch, sequenceOf: layout.sequenceOf, positions: layout.positions,
                             ropePositions: layout.ropePositions)
        case .latent(let weights):
            return latentAttention(weights, shape: description.latentAttention!, layer: l, input: input, batch: batch,
                                   sequenceOf: layout.sequenceOf, positions: layout.positions,
                                   ropePositions: layout.ropePositions.map { $0.x }, selections: &selections)
        case .linear(let weights):
            return gatedDeltaNet(weights, layer: l, input: input, batch: batch, sequenceOf: layout.sequenceOf, form: deltaRuleForm)
        }
    }

    /// The routed experts of layer `layer` on `input`: routed by `router`, computed by the
    /// backend (remotely in a cluster); zero-computation experts (LongCat-Flash: ids from
    /// `expertCount` on) are the identity, applied here and never dispatched.
    func moe(router: Router, layer: Int, input: [Float], layout: StepLayout, experts: any ExpertBackend) async throws -> [Float] {
        let h = description.hiddenSize, count = layout.count, expertsPerToken = layout.expertsPerToken
        var routing = input.withUnsafeBufferPointer {
            experts.route(layer: layer, router: router, hidden: $0.baseAddress!, tokens: count) { expertsPerToken[$0] }
        }
        var identity: [Float] = []
        if description.zeroComputationExperts > 0 {
            (routing, identity) = routing.splittingIdentityExperts(from: description.expertCount)
        }
        var output = try await experts.routedExperts(layer: layer, hidden: input, tokenCount: count, routing: routing)
        guard output.count == count * h else {
            throw ExpertShardError.badRouting(reason: "expert backend returned \(output.count) values for \(count) tokens")
        }
        for t in 0..<count where !identity.isEmpty && identity[t] != 0 {
            for i in 0..<h { output[t * h + i] += identity[t] * input[t * h + i] }
        }
        return output
    }

    /// `LongcatFlashDecoderLayer.forward`: sub-block 0 (attention on cache layer 2·index, dense
    /// `mlps.0`), whose post-attention norm also feeds the routed MoE; sub-block 1 (attention
    /// on cache layer 2·index + 1, `mlps.1`); the MoE's output added last. The experts are
    /// dispatched before `mlps.0` and combined after sub-block 1, so in a cluster the workers
    /// compute while the coordinator runs the second sub-block.
    func shortcutDecoderLayer(_ layer: DecoderLayerWeights, _ s: ShortcutSublayerWeights, index: Int, hidden: inout [Float],
                              batch: [SequenceStep], layout: StepLayout, experts: any ExpertBackend) async throws {
        guard case .sparse(let router, _) = layer.feedForward else {
            throw ExpertShardError.badRouting(reason: "a shortcut layer without its routed MoE")
        }
        let count = layout.count
        var selections: [[Int]]? = nil
        var normed = rmsNormed(hidden, weight: layer.inputNorm, rows: count)
        add(attend(layer.attention, cacheLayer: 2 * index, input: normed, batch: batch, layout: layout, selections: &selections), into: &hidden)
        normed = rmsNormed(hidden, weight: layer.postAttentionNorm, rows: count)
        let input = normed
        async let shortcutOutput = moe(router: router, layer: index, input: input, layout: layout, experts: experts)
        add(mlp(s.firstMLP, input: normed, rows: count), into: &hidden)
        normed = rmsNormed(hidden, weight: s.inputNorm, rows: count)
        add(attend(s.attention, cacheLayer: 2 * index + 1, input: normed, batch: batch, layout: layout, selections: &selections), into: &hidden)
        normed = rmsNormed(hidden, weight: s.postAttentionNorm, rows: count)
        add(mlp(s.mlp, input: normed, rows: count), into: &hidden)
        add(try await shortcutOutput, into: &hidden)
    }

    // MARK: - Blocks

    func rmsNormed(_ x: [Float], weight: [Float], rows: Int, epsilon: Float? = nil) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xb in
            weight.withUnsafeBufferPointer { wb in
                y.withUnsafeMutableBufferPointer { yb in
                    rmsNorm(xb.baseAddress!, rows: rows, width: weight.count, weight: wb.baseAddress!,
                            epsilon: epsilon ?? description.rmsNormEpsilon, into: yb.baseAddress!)
                }
            }
        }
        return y
    }

    func project(_ x: [Float], rows: Int, weight: WeightMatrix, bias: [Float]? = nil) -> [Float] {
        var y = [Float](repeating: 0, count: rows * weight.rows)
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { yb in
                if let bias {
                    bias.withUnsafeBufferPointer { linear(xb.baseAddress!, tokens: rows, weight: weight, bias: $0.baseAddress!, into: yb.baseAddress!) }
                } else {
                    linear(xb.baseAddress!, tokens: rows, weight: weight, into: yb.baseAddress!)
                }
            }
        }
        return y
    }

    private func add(_ x: [Float], into y: inout [Float]) {
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { yb in
                for i in 0..<yb.count { yb[i] += xb[i] }
            }
        }
    }

    /// `Qwen3MoeMLP.forward` / `Glm4MoeMLP.forward`.
    func mlp(_ weights: MLPWeights, input: [Float], rows: Int) -> [Float] {
        var gate = project(input, rows: rows, weight: weights.gate)
        let up = project(input, rows: rows, weight: weights.up)
        gate.withUnsafeMutableBufferPointer { g in
            up.withUnsafeBufferPointer { swiglu(gate: g.baseAddress!, up: $0.baseAddress!, count: g.count) }
        }
        var output = project(gate, rows: rows, weight: weights.down)
        if let outputGate = weights.outputGate {  // F.sigmoid(shared_expert_gate(x)) * shared_expert(x)
            let scores = project(input, rows: rows, weight: outputGate)
            let h = output.count / max(rows, 1)
            for t in 0..<rows {
                let factor = sigmoid(scores[t])
                for i in 0..<h { output[t * h + i] *= factor }
            }
        }
        return output
    }

    /// `Qwen3MoeAttention.forward` / `Glm4MoeAttention.forward` with the eager kernel.
    private func attention(
        _ w: AttentionWeights, layer: Int, input: [Float], batch: [SequenceStep], sequenceOf: [Int], positions: [Int],
        ropePositions: [SIMD3<Int>]
    ) -> [Float] {
        let a = description.attention
        let count = sequenceOf.count
        let d = a.headDimension
        let qWidth = a.heads * d, kvWidth = a.keyValueHeads * d
        var q = project(input, rows: count, weight: w.query, bias: w.queryBias)
        var queryGate: [Float]? = nil
        if a.queryGate {
            // Qwen3NextAttention: q_proj gives per head [query (d) | gate (d)].
            let both = q
            q = [Float](repeating: 0, count: count * qWidth)
            var gate = [Float](repeating: 0, count: count * qWidth)
            for row in 0..<(count * a.heads) {
                for i in 0..<d {
                    q[row * d + i] = both[row * 2 * d + i]
                    gate[row * d + i] = both[row * 2 * d + d + i]
                }
            }
            queryGate = gate
        }
        var k = project(input, rows: count, weight: w.key, bias: w.keyBias)
        let v = project(input, rows: count, weight: w.value, bias: w.valueBias)
        func normalise() {
            guard let qn = w.queryNorm, let kn = w.keyNorm else { return }
            // Per head (`head_dim` rows per token) or over the whole projection (one row).
            let perHead = a.queryKeyNormScope == .perHead
            q = rmsNormed(q, weight: qn, rows: perHead ? count * a.heads : count)
            k = rmsNormed(k, weight: kn, rows: perHead ? count * a.keyValueHeads : count)
        }
        if !a.queryKeyNormAfterRotary { normalise() }
        if a.rotates(layer: layer) { q.withUnsafeMutableBufferPointer { qb in
            k.withUnsafeMutableBufferPointer { kb in
                for t in 0..<count {
                    rotary.apply(qb.baseAddress! + t * qWidth, heads: a.heads, positions: ropePositions[t])
                    rotary.apply(kb.baseAddress! + t * kvWidth, heads: a.keyValueHeads, positions: ropePositions[t])
                }
            }
        } }
        if a.queryKeyNormAfterRotary { normalise() }  // HunYuanMoEV1Attention
        // past_key_values.update: write the new rows into each sequence's cache.
        k.withUnsafeBufferPointer { kb in
            v.withUnsafeBufferPointer { vb in
                for t in 0..<count {
                    let cache = batch[sequenceOf[t]].cache
                    (cache.keys(layer: layer) + positions[t] * kvWidth).update(from: kb.baseAddress! + t * kvWidth, count: kvWidth)
                    (cache.values(layer: layer) + positions[t] * kvWidth).update(from: vb.baseAddress! + t * kvWidth, count: kvWidth)
                }
            }
        }
        let gate = queryGate ?? w.outputGate.map { project(input, rows: count, weight: $0) }
        var attended = [Float](repeating: 0, count: count * qWidth)
        let longest = (positions.max() ?? 0) + 1
        let sinkValues = w.sinks ?? []
        q.withUnsafeBufferPointer { qb in
            attended.withUnsafeMutableBufferPointer { ob in sinkValues.withUnsafeBufferPointer { sinkBuffer in
                let query = qb.baseAddress!, out = ob.baseAddress!
                let sinks = w.sinks == nil ? nil : sinkBuffer.baseAddress
                parallelChunks(count, minimumChunk: max(1, 4096 / max(1, longest))) { tokens in
                    let scores = threadScratch(.attentionScores, Float.self, count: longest)
                    for t in tokens {
                        let cache = batch[sequenceOf[t]].cache
                        let length = positions[t] + 1  // causal: this position and all before it
                        let first = a.window(layer: layer).map { max(0, length - $0) } ?? 0
                        attendOneToken(
                            query: query + t * qWidth, heads: a.heads, kvHeads: a.keyValueHeads, headDimension: d,
                            keys: cache.keys(layer: layer), values: cache.values(layer: layer), rowStride: kvWidth,
                            first: first, length: length, scale: a.scale, scores: scores, into: out + t * qWidth, sinks: sinks)
                    }
                }
            } }
        }
        if let gate {  // AfmoeAttention, Qwen3NextAttention: output * sigmoid(gate)
            for i in 0..<attended.count { attended[i] *= sigmoid(gate[i]) }
        }
        return project(attended, rows: count, weight: w.output, bias: w.outputBias)
    }
}

/// Reads one decoder layer's weights from loaded tensors (decoder layers, and an MTP
/// layer's block at its own index), re-encoding dense matrices when asked.
struct LayerLoader {
    let description: ModelDescription
    let tensors: TensorSet
    let path: String
    let denseFormat: BlockFormat?

    func tensor(_ name: String) throws -> TensorView {
        guard let t = tensors[name] else { throw CheckpointError.missingTensor(tensor: name, searched: [path]) }
        return t
    }

    func matrix(_ name: String, as shape: [Int]? = nil) throws -> WeightMatrix {
        _ = try tensor(name)
        return try tensors.matrix(name, quantization: description.weightQuantization, as: shape)
    }

    func vector(_ name: String) throws -> [Float] { try tensor(name).floats() }

    /// An RMSNorm's weight as it multiplies: `1 + w` for zero-centred checkpoints (Qwen3-Next).
    func normWeight(_ name: String) throws -> [Float] {
        let w = try vector(name)
        return description.zeroCentredNorms ? w.map { 1 + $0 } : w
    }

    func encoded(_ m: WeightMatrix) -> WeightMatrix {
        guard let denseFormat, m.blockScales == nil, m.blockFormat == nil, m.columns % denseFormat.blockSize == 0 else { return m }
        return m.quantized(denseFormat)
    }

    func dense(_ name: String) throws -> WeightMatrix { encoded(try matrix(name)) }

    func mlp(_ prefix: String) throws -> MLPWeights {
        MLPWeights(gate: try dense(prefix + "gate_proj.weight"), up: try dense(prefix + "up_proj.weight"),
                   down: try dense(prefix + "down_proj.weight"))
    }

    /// Layer `l`'s token mixer when it is Gated DeltaNet.
    func linearAttention(_ l: Int) throws -> AttentionBlockWeights? {
        guard description.isLinearAttentionLayer(l), let shape = description.linearAttention else { return nil }
        return .linear(try GatedDeltaNetWeights(prefix: description.layerPrefix(l) + description.linearAttentionModule, shape: shape, dense: dense,
                                                vector: vector))
    }

    func layer(_ l: Int, kind: FeedForwardKind) throws -> DecoderLayerWeights {
        if description.shortcutSublayers != nil { return try shortcutLayer(l) }
        let p = description.layerPrefix(l)
        let a = description.attention
        let attention: AttentionBlockWeights
        if let linear = try linearAttention(l) {
            attention = linear
        } else if let latent = description.latentAttention {
            attention = .latent(try LatentAttentionWeights(prefix: p + description.attentionModule, layer: l, shape: latent, matrix: { try matrix($0, as: $1) },
                                                           dense: dense, vector: vector))
        } else {
            let m = p + description.attentionModule
            attention = .grouped(AttentionWeights(
                query: try dense(m + "q_proj.weight"),
                key: try dense(m + "k_proj.weight"),
                value: try dense(m + "v_proj.weight"),
                output: try dense(m + "o_proj.weight"),
                queryBias: a.queryKeyValueBias ? try vector(m + "q_proj.bias") : nil,
                keyBias: a.queryKeyValueBias ? try vector(m + "k_proj.bias") : nil,
                valueBias: a.queryKeyValueBias ? try vector(m + "v_proj.bias") : nil,
                outputBias: a.outputBias ? try vector(m + "o_proj.bias") : nil,
                queryNorm: a.queryKeyNorm ? try normWeight(m + "\(a.queryNormName).weight") : nil,
                keyNorm: a.queryKeyNorm ? try normWeight(m + "\(a.keyNormName).weight") : nil,
                sinks: a.sinks ? try vector(m + "sinks") : nil,
                outputGate: a.outputGate ? try dense(m + "gate_proj.weight") : nil))
        }
        let feedForward: FeedForwardWeights
        switch kind {
        case .dense:
            feedForward = .dense(try mlp(p + "mlp."))
        case .sparse:
            feedForward = try sparseFeedForward(l)
        }
        let norms = description.layerNorms
        return DecoderLayerWeights(inputNorm: try normWeight(p + norms.input + ".weight"),
                                   postAttentionNorm: try normWeight(p + norms.preFeedForward + ".weight"),
                                   attentionOutputNorm: try norms.attentionOutput.map { try vector(p + $0 + ".weight") },
                                   feedForwardOutputNorm: try norms.feedForwardOutput.map { try vector(p + $0 + ".weight") },
                                   attention: attention, feedForward: feedForward)
    }

    /// The router and shared experts of layer `l`'s MoE block.
    func sparseFeedForward(_ l: Int) throws -> FeedForwardWeights {
        let p = description.layerPrefix(l)
        let bias = description.hasCorrectionBias ? try vector(description.correctionBiasName(layer: l)) : nil
        let router = try Router(configuration: description.router, gate: try matrix(description.routerName(layer: l)),
                                correctionBias: bias,
                                logitBias: try description.moeNames.routerBias.map { try vector(p + description.moeNames.block + $0) })
        var shared = description.sharedExpertIntermediateSize != nil
            ? try mlp(p + description.moeNames.block + description.moeNames.sharedExperts) : nil
        if let gate = description.moeNames.sharedExpertGate {
            shared?.outputGate = try matrix(p + description.moeNames.block + gate)
        }
        return .sparse(router: router, shared: shared)
    }

    /// LongCat-Flash's layer `l`: indexed module lists (`input_layernorm.0`, `self_attn.1`,
    /// `mlps.0`…), two latent attention blocks on cache layers 2l and 2l + 1, and the MoE.
    func shortcutLayer(_ l: Int) throws -> DecoderLayerWeights {
        let p = description.layerPrefix(l)
        guard let latent = description.latentAttention else {
            throw CheckpointError.badConfig(path: "config.json", field: "kv_lora_rank", reason: "shortcut layers need latent attention")
        }
        func attention(_ i: Int) throws -> AttentionBlockWeights {
            .latent(try LatentAttentionWeights(prefix: p + "self_attn.\(i).", layer: 2 * l + i, shape: latent,
                                               matrix: { try matrix($0, as: $1) }, dense: dense, vector: vector))
        }
        var weights = DecoderLayerWeights(inputNorm: try vector(p + "input_layernorm.0.weight"),
                                          postAttentionNorm: try vector(p + "post_attention_layernorm.0.weight"),
                                          attention: try attention(0), feedForward: try sparseFeedForward(l))
        weights.shortcut = ShortcutSublayerWeights(
            firstMLP: try mlp(p + "mlps.0."), inputNorm: try vector(p + "input_layernorm.1.weight"), attention: try attention(1),
            postAttentionNorm: try vector(p + "post_attention_layernorm.1.weight"), mlp: try mlp(p + "mlps.1."))
        return weights
    }
}
