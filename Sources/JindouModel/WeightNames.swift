/// Tensor names as Hugging Face checkpoints store them, and the shapes config.json
/// implies for each. One place, so the loader, the worker and the tests agree.
public enum WeightNames {
    public static let embedding = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    public static let lmHead = "lm_head.weight"

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
    /// Every tensor except routed experts: what the coordinator (or the single-process
    /// engine) holds.
    public func nonExpertTensors() -> [TensorRequest] {
        let h = hiddenSize
        let a = attention
        var requests = [
            TensorRequest(WeightNames.embedding, shape: [vocabularySize, h]),
            TensorRequest(WeightNames.finalNorm, shape: [h]),
        ]
        if !tieWordEmbeddings {
            requests.append(TensorRequest(WeightNames.lmHead, shape: [vocabularySize, h]))
        }
        for (l, kind) in layers.enumerated() {
            let p = WeightNames.layer(l)
            let q = a.heads * a.headDimension
            let kv = a.keyValueHeads * a.headDimension
            requests += [
                TensorRequest(p + "input_layernorm.weight", shape: [h]),
                TensorRequest(p + "post_attention_layernorm.weight", shape: [h]),
                TensorRequest(p + "self_attn.q_proj.weight", shape: [q, h]),
                TensorRequest(p + "self_attn.k_proj.weight", shape: [kv, h]),
                TensorRequest(p + "self_attn.v_proj.weight", shape: [kv, h]),
                TensorRequest(p + "self_attn.o_proj.weight", shape: [h, q]),
            ]
            if a.queryKeyValueBias {
                requests += [
                    TensorRequest(p + "self_attn.q_proj.bias", shape: [q]),
                    TensorRequest(p + "self_attn.k_proj.bias", shape: [kv]),
                    TensorRequest(p + "self_attn.v_proj.bias", shape: [kv]),
                ]
            }
            if a.outputBias { requests.append(TensorRequest(p + "self_attn.o_proj.bias", shape: [h])) }
            if a.queryKeyNorm {
                requests += [
                    TensorRequest(p + "self_attn.q_norm.weight", shape: [a.headDimension]),
                    TensorRequest(p + "self_attn.k_norm.weight", shape: [a.headDimension]),
                ]
            }
            switch kind {
            case .dense(let intermediate):
                requests += mlpTensors(prefix: p + "mlp.", intermediate: intermediate)
            case .sparse:
                requests.append(TensorRequest(WeightNames.router(layer: l), shape: [expertCount, h]))
                if hasCorrectionBias {
                    requests.append(TensorRequest(WeightNames.correctionBias(layer: l), shape: [expertCount]))
                }
                if let shared = sharedExpertIntermediateSize {
                    requests += mlpTensors(prefix: p + "mlp.shared_experts.", intermediate: shared)
                }
            }
        }
        return requests
    }

    /// The three projections of routed expert `key`.
    public func expertTensors(_ key: ExpertKey) -> [TensorRequest] {
        ["gate", "up", "down"].map { projection in
            TensorRequest(
                WeightNames.expert(layer: key.layer, expert: key.expert, projection: projection),
                shape: projection == "down" ? [hiddenSize, moeIntermediateSize] : [moeIntermediateSize, hiddenSize])
        }
    }

    /// Every routed expert of every sparse layer.
    public var allExperts: [ExpertKey] {
        sparseLayers.flatMap { l in (0..<expertCount).map { ExpertKey(layer: l, expert: $0) } }
    }

    private func mlpTensors(prefix: String, intermediate: Int) -> [TensorRequest] {
        [
            TensorRequest(prefix + "gate_proj.weight", shape: [intermediate, hiddenSize]),
            TensorRequest(prefix + "up_proj.weight", shape: [intermediate, hiddenSize]),
            TensorRequest(prefix + "down_proj.weight", shape: [hiddenSize, intermediate]),
        ]
    }
}
