// MiniMax-M2 / M2.1 (229B-A10B), mirroring transformers' `models/minimax_m2/
// configuration_minimax_m2.py` and `modeling_minimax_m2.py`:
// - `MiniMaxM2Attention`: GQA whose `q_norm`/`k_norm` are RMSNorms over the whole projected
//   width (`heads × head_dim`, not per head) before partial rotary (`rotary_dim` of each
//   head's first features).
// - `MiniMaxM2DecoderLayer`: every layer is a `MiniMaxM2SparseMoeBlock` (no dense layers,
//   no shared experts); pre-norm residuals as Qwen3-MoE.
// - `MiniMaxM2TopKRouter`: sigmoid scores, `e_score_correction_bias` for the choice only,
//   the chosen scores renormalised to sum to one, no scaling and no groups.
// - Weight names as the Hub checkpoints (and `save_pretrained`, through transformers'
//   `conversion_mapping` for `mixtral`) write them: `block_sparse_moe.gate.weight`,
//   `block_sparse_moe.e_score_correction_bias`, `block_sparse_moe.experts.E.w1|w3|w2`.
// The released checkpoints' multi-token-prediction modules (`use_mtp`) are not read by
// transformers either; Jindou ignores them.

import Foundation
import JindouRouting

enum MiniMaxM2Family: ArchitectureDefinition {
    static let architecture = Architecture.miniMaxM2
    static let modelTypes = ["minimax_m2"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(MiniMaxM2Configuration.self, configJSON) }
}

/// `MiniMaxM2Config`, read from either config style (`rotary_dim` as the Hub files write it,
/// or transformers 5's `rope_parameters.partial_rotary_factor`).
struct MiniMaxM2Configuration: DescribedConfiguration {
    /// `intermediate_size` is each routed expert's width (MiniMax has no other feed-forward).
    var core: DecoderCore
    var numExpertsPerTok: Int
    var numLocalExperts: Int
    /// Keys of the released config.json that transformers ignores; Jindou refuses values
    /// that would change the computation transformers does.
    var useQKNorm: Bool
    var qkNormType: String
    var scoringFunc: String
    var useRoutingBias: Bool
    var sharedIntermediateSize: Int

    /// MiniMaxM2Config's defaults.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 200_064, hiddenSize: 3072, intermediateSize: 1536, numHiddenLayers: 62, numAttentionHeads: 48,
        numKeyValueHeads: 8, headDim: 128, maxPositionEmbeddings: 196_608, rmsNormEps: 1e-6, ropeTheta: 5_000_000,
        bosTokenID: 200034, eosTokenID: [200020])

    enum CodingKeys: String, CodingKey {
        case ropeParameters = "rope_parameters"
        case partialRotaryFactor = "partial_rotary_factor"
        case rotaryDim = "rotary_dim"
        case numExpertsPerTok = "num_experts_per_tok"
        case numLocalExperts = "num_local_experts"
        case useQKNorm = "use_qk_norm"
        case qkNormType = "qk_norm_type"
        case scoringFunc = "scoring_func"
        case useRoutingBias = "use_routing_bias"
        case sharedIntermediateSize = "shared_intermediate_size"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are MiniMaxM2Config's.
        // MiniMaxM2Config.convert_rope_params_to_dict: `rotary_dim` sets the factor when
        // `rope_parameters` does not already.
        if let rotaryDim = try c.decodeIfPresent(Int.self, forKey: .rotaryDim),
           (try? c.nestedContainer(keyedBy: RotaryFactorKey.self, forKey: .ropeParameters))?.contains(.partialRotaryFactor) != true,
           !c.contains(.partialRotaryFactor) {
            core.rope.partialRotaryFactor = Double(rotaryDim) / Double(core.headDimension)
        }
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 8
        numLocalExperts = try c.decodeIfPresent(Int.self, forKey: .numLocalExperts) ?? 256
        useQKNorm = try c.decodeIfPresent(Bool.self, forKey: .useQKNorm) ?? true
        qkNormType = try c.decodeIfPresent(String.self, forKey: .qkNormType) ?? "per_layer"
        scoringFunc = try c.decodeIfPresent(String.self, forKey: .scoringFunc) ?? "sigmoid"
        useRoutingBias = try c.decodeIfPresent(Bool.self, forKey: .useRoutingBias) ?? true
        sharedIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .sharedIntermediateSize) ?? 0
    }

    private enum RotaryFactorKey: String, CodingKey { case partialRotaryFactor = "partial_rotary_factor" }

    func description() throws -> ModelDescription {
        // transformers' MiniMaxM2 computes exactly one thing; refuse configs that ask for another.
        guard core.hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(core.hiddenAct)' is not supported (MiniMax-M2 uses silu)") }
        guard useQKNorm, qkNormType == "per_layer" else {
            throw ConfigurationError(field: useQKNorm ? "qk_norm_type" : "use_qk_norm",
                                     reason: "only the whole-projection q/k norm of MiniMaxM2Attention (use_qk_norm true, qk_norm_type per_layer) is supported")
        }
        guard scoringFunc == "sigmoid" else { throw ConfigurationError(field: "scoring_func", reason: "'\(scoringFunc)' is not supported (MiniMaxM2TopKRouter scores with sigmoid)") }
        guard useRoutingBias else { throw ConfigurationError(field: "use_routing_bias", reason: "MiniMaxM2SparseMoeBlock always adds e_score_correction_bias") }
        guard sharedIntermediateSize == 0 else { throw ConfigurationError(field: "shared_intermediate_size", reason: "shared experts are not part of MiniMax-M2") }
        guard core.headDimension > 0, core.rope.partialRotaryFactor > 0, core.rope.partialRotaryFactor <= 1 else {
            throw ConfigurationError(field: "rotary_dim", reason: "must be in 1…head_dim")
        }
        var attention = try core.groupedAttention(queryKeyNorm: true, queryKeyValueBias: false, outputBias: false)
        attention.queryKeyNormScope = .wholeProjection
        var description = core.description(
            architecture: .miniMaxM2,
            attention: attention,
            layers: Array(repeating: .sparse, count: core.numHiddenLayers),
            router: RouterConfiguration(expertCount: numLocalExperts, expertsPerToken: numExpertsPerTok, scoring: .sigmoid,
                                        normalizeTopK: true),
            hasCorrectionBias: true, moeIntermediateSize: core.intermediateSize,
            sharedExpertIntermediateSize: nil)
        description.moeNames = .mixtral
        return description
    }
}
