import JindouNumerics

/// Tensor names as Hugging Face checkpoints store them, and the shapes config.json
/// implies for each. One place, so the loader, the worker and the tests agree.
public enum WeightNames {
    public static let embedding = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    public static let lmHead = "lm_head.weight"
    /// Suffix of a block-FP8 weight's dequantisation scales (`weight_scale_inv`).
    public static let scaleSuffix = "_scale_inv"

    public static func layer(_ index: Int) -> String { "model.layers.\(index)." }

    public static func router(layer: Int) -> String { Self.layer(layer) + "mlp.gate.weight" }
    public static func correctionBias(layer: Int) -> String { Self.layer(layer) + "mlp.gate.e_score_correction_bias" }

    /// `model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight`.
    public static func expert(layer: Int, expert: Int, projection: String) -> String {
        Self.layer(layer) + "mlp.experts.\(expert).\(projection)_proj.weight"
    }
}

/// A routed expert of one layer.
public struct ExpertKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let layer: Int
    public let expert: Int

    public init(layer: Int, expert: Int) {
        self.layer = layer
        self.expert = expert
    }

    public static func < (a: ExpertKey, b: ExpertKey) -> Bool {
        (a.layer, a.expert) < (b.layer, b.expert)
    }

    public var description: String { "(layer \(layer), expert \(expert))" }
}

extension ModelDescription {
    /// Tensor names of this checkpoint's text model (prefix `textPrefix`).
    public var embeddingName: String { textPrefix + embeddingModule + ".weight" }
    public var finalNormName: String { textPrefix + "norm.weight" }
    /// Layer `layer`'s tensor prefix; past the decoder layers, the MTP layers' (Qwen3-Next's
    /// `mtp.layers.N.`, DeepSeek-V3's `model.layers.{layerCount + N}.`).
    public func layerPrefix(_ layer: Int) -> String {
        if layer >= layerCount, let prefix = predictionNames.layersPrefix { return prefix + "\(layer - layerCount)." }
        return textPrefix + "layers.\(layer)."
    }
    public func routerName(layer: Int) -> String { layerPrefix(layer) + moeNames.block + moeNames.router }
    public func correctionBiasName(layer: Int) -> String { layerPrefix(layer) + moeNames.block + moeNames.correctionBias }

    /// The key expert `key`'s projection is loaded under. For fused storage, `gate` and
    /// `up` share the `gate_up_proj` slice (gate first).
    public func expertTensorKey(_ key: ExpertKey, projection: String) -> String {
        switch expertStorage {
        case .perExpert:
            return layerPrefix(key.layer) + moeNames.block + "experts.\(key.expert).\(moeNames.projection(projection)).weight"
        case .fused, .interleavedWithBias:
            let name = layerPrefix(key.layer) + (projection == "down" ? "mlp.experts.down_proj" : "mlp.experts.gate_up_proj")
            return TensorRequest(name, shape: nil, rows: key.expert..<(key.expert + 1)).key
        }
    }

    /// The bias of expert `key`'s projection (`ModelDescription.expertBiases`).
    public func expertBiasKey(_ key: ExpertKey, projection: String) -> String {
        layerPrefix(key.layer) + moeNames.block + "experts.\(key.expert).\(moeNames.projection(projection)).bias"
    }

    /// The slice of layer `key.layer`'s stacked expert tensor `name` (e.g. `gate_up_proj_bias`)
    /// that holds expert `key.expert`, and the key it is loaded under.
    func stackedExpertSlice(_ key: ExpertKey, _ name: String, shape: [Int]? = nil) -> TensorRequest {
        TensorRequest(layerPrefix(key.layer) + moeNames.block + "experts." + name, shape: shape, rows: key.expert..<(key.expert + 1))
    }

    /// Every tensor except routed experts: what the coordinator (or the single-process
    /// engine) holds.
    public func nonExpertTensors() -> [TensorRequest] {
        let h = hiddenSize
        var requests = [
            TensorRequest(embeddingName, shape: [vocabularySize, h]),
            TensorRequest(finalNormName, shape: [h]),
        ]
        if !tieWordEmbeddings {
            requests.append(TensorRequest(lmHeadName, shape: [vocabularySize, h]))
        }
        for (l, kind) in layers.enumerated() { requests += layerTensors(l, kind: kind) }
        return requests
    }

    /// The non-expert tensors of decoder layer `l` (also an MTP layer's block, stored at an
    /// index past the decoder layers).
    public func layerTensors(_ l: Int, kind: FeedForwardKind) -> [TensorRequest] {
        let h = hiddenSize, p = layerPrefix(l)
        if let shortcut = shortcutSublayers, let latent = latentAttention {
            // LongCat-Flash: two of each sub-block (indexed module lists), then the MoE's router.
            var requests: [TensorRequest] = []
            for i in 0..<2 {
                requests.append(TensorRequest(p + "input_layernorm.\(i).weight", shape: [h]))
                requests.append(TensorRequest(p + "post_attention_layernorm.\(i).weight", shape: [h]))
                requests += latentAttentionTensors(prefix: p + "self_attn.\(i).", latent, layer: 2 * l + i)
                requests += mlpTensors(prefix: p + "mlps.\(i).", intermediate: shortcut.intermediateSize)
            }
            return requests + routerTensors(l)
        }
        var requests = [
            TensorRequest(p + layerNorms.input + ".weight", shape: [h]),
            TensorRequest(p + layerNorms.preFeedForward + ".weight", shape: [h]),
        ]
        for name in [layerNorms.attentionOutput, layerNorms.feedForwardOutput].compactMap({ $0 }) {
            requests.append(TensorRequest(p + name + ".weight", shape: [h]))
        }
        if isLinearAttentionLayer(l), let shape = linearAttention {
            requests += GatedDeltaNetWeights.tensorRequests(prefix: p + linearAttentionModule, shape: shape, hidden: h) { linear($0, shape: $1) }
        } else if let latent = latentAttention {
            requests += latentAttentionTensors(prefix: p + attentionModule, latent, layer: l)
        } else {
            requests += groupedAttentionTensors(prefix: p + attentionModule)
        }
        switch kind {
        case .dense(let intermediate):
            requests += mlpTensors(prefix: p + "mlp.", intermediate: intermediate)
        case .sparse:
            requests += routerTensors(l)
        }
        return requests
    }

    /// Layer `l`'s router (every expert it scores, zero-computation ones included), its biases
    /// and the shared experts.
    private func routerTensors(_ l: Int) -> [TensorRequest] {
        let h = hiddenSize, p = layerPrefix(l), scored = router.expertCount
        var requests = [TensorRequest(routerName(layer: l), shape: [scored, h])]
        if let bias = moeNames.routerBias {
            requests.append(TensorRequest(p + moeNames.block + bias, shape: [scored]))
        }
        if hasCorrectionBias {
            requests.append(TensorRequest(correctionBiasName(layer: l), shape: moeNames.correctionBiasIsRow ? [1, scored] : [scored]))
        }
        if let shared = sharedExpertIntermediateSize {
            requests += mlpTensors(prefix: p + moeNames.block + moeNames.sharedExperts, intermediate: shared)
            if let gate = moeNames.sharedExpertGate { requests += linear(p + moeNames.block + gate, shape: [1, h]) }
        }
        return requests
    }

    /// The three projections of routed expert `key` (and their FP8 block scales, if any).
    public func expertTensors(_ key: ExpertKey) -> [TensorRequest] {
        switch expertStorage {
        case .perExpert:
            return ["gate", "up", "down"].flatMap { projection in
                linear(expertTensorKey(key, projection: projection),
                       shape: projection == "down" ? [hiddenSize, moeIntermediateSize] : [moeIntermediateSize, hiddenSize])
                    + (expertBiases ? [TensorRequest(expertBiasKey(key, projection: projection),
                                                     shape: [projection == "down" ? hiddenSize : moeIntermediateSize])] : [])
            }
        case .fused:
            let p = layerPrefix(key.layer) + "mlp.experts."
            let rows = key.expert..<(key.expert + 1)
            // Either orientation (see ExpertStorage.fused); ExpertShard checks the shapes.
            return [TensorRequest(p + "gate_up_proj", shape: nil, rows: rows), TensorRequest(p + "down_proj", shape: nil, rows: rows)]
        case .interleavedWithBias(let mxfp4):
            let e = expertCount, h = hiddenSize, m = moeIntermediateSize
            let biases = [stackedExpertSlice(key, "gate_up_proj_bias", shape: [e, 2 * m]), stackedExpertSlice(key, "down_proj_bias", shape: [e, h])]
            guard mxfp4 else {
                return [stackedExpertSlice(key, "gate_up_proj", shape: [e, h, 2 * m]), stackedExpertSlice(key, "down_proj", shape: [e, m, h])] + biases
            }
            let b = MXFP4.blockSize
            return [
                stackedExpertSlice(key, "gate_up_proj_blocks", shape: [e, 2 * m, h / b, 16]),
                stackedExpertSlice(key, "gate_up_proj_scales", shape: [e, 2 * m, h / b]),
                stackedExpertSlice(key, "down_proj_blocks", shape: [e, h, m / b, 16]),
                stackedExpertSlice(key, "down_proj_scales", shape: [e, h, m / b]),
            ] + biases
        }
    }

    /// A Linear weight, and its `_scale_inv` block scales when the checkpoint is block-FP8.
    /// The scales are optional: a weight stored unquantised in an FP8 checkpoint has none,
    /// and an F8_E4M3 weight without them is refused when the matrix is built.
    func linear(_ name: String, shape: [Int]) -> [TensorRequest] {
        var requests = [TensorRequest(name, shape: shape)]
        if let q = weightQuantization {
            requests.append(TensorRequest(name + WeightNames.scaleSuffix, shape: q.scaleShape(rows: shape[0], columns: shape[1]),
                                          optional: true))
        }
        return requests
    }

    private func groupedAttentionTensors(prefix p: String) -> [TensorRequest] {
        let h = hiddenSize, a = attention
        let q = a.heads * a.headDimension
        let kv = a.keyValueHeads * a.headDimension
        var requests = linear(p + "q_proj.weight", shape: [a.queryGate ? 2 * q : q, h]) + linear(p + "k_proj.weight", shape: [kv, h])
            + linear(p + "v_proj.weight", shape: [kv, h]) + linear(p + "o_proj.weight", shape: [h, q])
        if a.queryKeyValueBias {
            requests += [
                TensorRequest(p + "q_proj.bias", shape: [q]),
                TensorRequest(p + "k_proj.bias", shape: [kv]),
                TensorRequest(p + "v_proj.bias", shape: [kv]),
            ]
        }
        if a.outputBias { requests.append(TensorRequest(p + "o_proj.bias", shape: [h])) }
        if a.sinks { requests.append(TensorRequest(p + "sinks", shape: [a.heads])) }
        if a.outputGate { requests += linear(p + "gate_proj.weight", shape: [q, h]) }
        if a.queryKeyNorm {
            let whole = a.queryKeyNormScope == .wholeProjection
            requests += [
                TensorRequest(p + a.queryNormName + ".weight", shape: [whole ? q : a.headDimension]),
                TensorRequest(p + a.keyNormName + ".weight", shape: [whole ? kv : a.headDimension]),
            ]
        }
        return requests
    }

    /// `DeepseekV3Attention`'s parameters.
    private func latentAttentionTensors(prefix p: String, _ m: LatentAttentionShape, layer: Int) -> [TensorRequest] {
        let h = hiddenSize
        let q = m.heads * m.queryKeyDimension
        var requests: [TensorRequest] = []
        if let rank = m.queryLoraRank {
            requests += linear(p + "q_a_proj.weight", shape: [rank, h])
            requests.append(TensorRequest(p + "q_a_layernorm.weight", shape: [rank]))
            requests += linear(p + "q_b_proj.weight", shape: [q, rank])
            if m.bias { requests.append(TensorRequest(p + "q_a_proj.bias", shape: [rank])) }
        } else {
            requests += linear(p + "q_proj.weight", shape: [q, h])
        }
        requests += linear(p + "kv_a_proj_with_mqa.weight", shape: [m.cacheRowWidth, h])
        requests.append(TensorRequest(p + "kv_a_layernorm.weight", shape: [m.keyValueLoraRank]))
        switch m.upProjections {
        case .joint:
            requests += linear(p + "kv_b_proj.weight", shape: [m.heads * (m.nopeDimension + m.valueDimension), m.keyValueLoraRank])
        case .split:
            requests += [
                TensorRequest(p + "k_b_proj.weight", shape: [m.heads, m.keyValueLoraRank, m.nopeDimension]),
                TensorRequest(p + "v_b_proj.weight", shape: [m.heads, m.valueDimension, m.keyValueLoraRank]),
            ]
        }
        requests += linear(p + m.outputName + ".weight", shape: [h, m.heads * m.valueDimension])
        if m.headGate { requests += linear(p + "g_proj.weight", shape: [m.heads, h]) }
        if let x = m.indexer, x.hasIndexer(layer: layer), let rank = m.queryLoraRank {
            requests += linear(p + "indexer.wq_b.weight", shape: [x.heads * x.headDimension, rank])
            requests += linear(p + "indexer.wk.weight", shape: [x.headDimension, h])
            requests += linear(p + "indexer.weights_proj.weight", shape: [x.heads, h])
            requests += [TensorRequest(p + "indexer.k_norm.weight", shape: [x.headDimension]),
                         TensorRequest(p + "indexer.k_norm.bias", shape: [x.headDimension])]
        }
        if m.bias {
            requests += [
                TensorRequest(p + "kv_a_proj_with_mqa.bias", shape: [m.cacheRowWidth]),
                TensorRequest(p + "o_proj.bias", shape: [h]),
            ]
        }
        return requests
    }

    /// Every routed expert of every sparse layer.
    public var allExperts: [ExpertKey] {
        sparseLayers.flatMap { l in (0..<expertCount).map { ExpertKey(layer: l, expert: $0) } }
    }

    private func mlpTensors(prefix: String, intermediate: Int) -> [TensorRequest] {
        linear(prefix + "gate_proj.weight", shape: [intermediate, hiddenSize])
            + linear(prefix + "up_proj.weight", shape: [intermediate, hiddenSize])
            + linear(prefix + "down_proj.weight", shape: [hiddenSize, intermediate])
    }
}
