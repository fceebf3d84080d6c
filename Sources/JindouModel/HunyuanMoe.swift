// Hunyuan-A13B (80B-A13B), mirroring transformers' `models/hunyuan_v1_moe/
// modular_hunyuan_v1_moe.py`:
// - `HunYuanMoEV1Attention(LlamaAttention)`: GQA, `attention_bias` on q/k/v/o, and per-head
//   RMSNorms `query_layernorm`/`key_layernorm` applied to q and k **after** rotary.
// - `HunYuanMoEV1RotaryEmbedding`: with `type: dynamic` and an `alpha`, NTK-alpha — a fixed
//   base `rope_theta · alpha^(d / (d − 2))`, not a length-dependent dynamic scaling.
// - `HunYuanMoEV1Moe`: every layer; `HunYuanMoEV1Gate` (`gate.wg`, fp32) softmax, top-k,
//   renormalised; routed experts and a dense `shared_mlp`, both of `intermediate_size`.
// - `moe_topk`/`num_experts` may be lists per layer (transformers reads entry `layer_idx`);
//   Jindou's router takes one K and one expert count, so differing entries are refused.
// Keys of the released config.json transformers ignores are checked against what it
// computes (`use_qk_norm`, `use_mixed_mlp_moe`, `num_shared_expert`, `moe_intermediate_size`,
// `use_cla`), so a checkpoint that means something else is refused rather than misread.

import Foundation
import JindouRouting

enum HunyuanMoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.hunyuanMoe
    static let modelTypes = ["hunyuan_v1_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(HunyuanMoeConfiguration.self, configJSON) }
}

/// An integer, or one per layer.
struct IntegerPerLayer: Decodable, Equatable {
    var values: [Int]
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let one = try? c.decode(Int.self) { values = [one] } else { values = try c.decode([Int].self) }
    }

    /// The one value every layer uses, or a refusal naming `field`.
    func uniform(_ field: String, layers: Int) throws -> Int {
        guard let first = values.first else { throw ConfigurationError(field: field, reason: "is empty") }
        guard values.count == 1 || values.count == layers else {
            throw ConfigurationError(field: field, reason: "has \(values.count) entries for \(layers) layers")
        }
        guard values.allSatisfy({ $0 == first }) else {
            throw ConfigurationError(field: field, reason: "differs between layers, which Jindou does not compute yet")
        }
        return first
    }
}

/// `HunYuanMoEV1Config`, read from either config style (see `RopeSettings`).
struct HunyuanMoeConfiguration: DescribedConfiguration {
    var core: DecoderCore
    var numExperts: IntegerPerLayer
    var moeTopk: IntegerPerLayer
    var useQKNorm: Bool
    var useMixedMlpMoe: Bool
    var useCla: Bool
    var numSharedExpert: IntegerPerLayer?
    var moeIntermediateSize: IntegerPerLayer?

    /// HunYuanMoEV1Config's defaults (NTK-alpha `dynamic` rope resolved in `description`).
    static let defaults = DecoderCore.Defaults(
        vocabSize: 290_943, hiddenSize: 4096, intermediateSize: 11008, numHiddenLayers: 32, numAttentionHeads: 32,
        maxPositionEmbeddings: 2048, rmsNormEps: 1e-5, ropeTheta: 10_000, familyRopeTypes: ["dynamic"],
        bosTokenID: 1, eosTokenID: [2])

    enum CodingKeys: String, CodingKey {
        case numExperts = "num_experts"
        case moeTopk = "moe_topk"
        case useQKNorm = "use_qk_norm"
        case useMixedMlpMoe = "use_mixed_mlp_moe"
        case useCla = "use_cla"
        case numSharedExpert = "num_shared_expert"
        case moeIntermediateSize = "moe_intermediate_size"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are HunYuanMoEV1Config's.
        numExperts = try c.decodeIfPresent(IntegerPerLayer.self, forKey: .numExperts) ?? IntegerPerLayer(one: 1)
        moeTopk = try c.decodeIfPresent(IntegerPerLayer.self, forKey: .moeTopk) ?? IntegerPerLayer(one: 1)
        useQKNorm = try c.decodeIfPresent(Bool.self, forKey: .useQKNorm) ?? true
        useMixedMlpMoe = try c.decodeIfPresent(Bool.self, forKey: .useMixedMlpMoe) ?? true
        useCla = try c.decodeIfPresent(Bool.self, forKey: .useCla) ?? false
        numSharedExpert = try c.decodeIfPresent(IntegerPerLayer.self, forKey: .numSharedExpert)
        moeIntermediateSize = try c.decodeIfPresent(IntegerPerLayer.self, forKey: .moeIntermediateSize)
    }

    func description() throws -> ModelDescription {
        let (numHiddenLayers, intermediateSize, rope) = (core.numHiddenLayers, core.intermediateSize, core.rope)
        guard core.hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(core.hiddenAct)' is not supported (silu only)") }
        guard useQKNorm else { throw ConfigurationError(field: "use_qk_norm", reason: "HunYuanMoEV1Attention always normalises q and k") }
        guard useMixedMlpMoe else { throw ConfigurationError(field: "use_mixed_mlp_moe", reason: "HunYuanMoEV1Moe always adds its shared_mlp") }
        guard !useCla else { throw ConfigurationError(field: "use_cla", reason: "cross-layer attention is not part of transformers' Hunyuan") }
        if let shared = numSharedExpert, try shared.uniform("num_shared_expert", layers: numHiddenLayers) != 1 {
            throw ConfigurationError(field: "num_shared_expert", reason: "transformers' shared_mlp is one expert of intermediate_size")
        }
        if let width = moeIntermediateSize, try width.uniform("moe_intermediate_size", layers: numHiddenLayers) != intermediateSize {
            throw ConfigurationError(field: "moe_intermediate_size", reason: "differs from intermediate_size, which transformers' experts use")
        }
        let headDimension = core.headDimension
        var theta = rope.theta
        if rope.type == "dynamic" {
            // HunYuanDenseV1RotaryEmbedding.compute_ntk_alpha_rope_parameters
            guard let alpha = rope.alpha else {
                throw ConfigurationError(field: "rope_parameters.alpha", reason: "dynamic rope is supported as Hunyuan's NTK-alpha only")
            }
            theta *= pow(alpha, Double(headDimension) / Double(headDimension - 2))
        }
        var attention = AttentionShape(
            heads: core.numAttentionHeads, keyValueHeads: core.numKeyValueHeads, headDimension: headDimension,
            rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: theta,
            queryKeyNorm: true, queryKeyValueBias: core.attentionBias, outputBias: core.attentionBias, slidingWindow: nil)
        attention.queryKeyNormAfterRotary = true
        (attention.queryNormName, attention.keyNormName) = ("query_layernorm", "key_layernorm")
        var description = core.description(
            architecture: .hunyuanMoe,
            attention: attention,
            layers: Array(repeating: .sparse, count: numHiddenLayers),
            router: RouterConfiguration(
                expertCount: try numExperts.uniform("num_experts", layers: numHiddenLayers),
                expertsPerToken: try moeTopk.uniform("moe_topk", layers: numHiddenLayers), scoring: .softmax, normalizeTopK: true),
            hasCorrectionBias: false, moeIntermediateSize: intermediateSize,
            sharedExpertIntermediateSize: intermediateSize)
        description.moeNames.router = "gate.wg.weight"
        description.moeNames.sharedExperts = "shared_mlp."
        return description
    }
}

extension IntegerPerLayer {
    init(one: Int) { values = [one] }
}
