// Qwen3-Next (80B-A3B), mirroring transformers' `models/qwen3_next/configuration_qwen3_next.py`
// and `modeling_qwen3_next.py`:
// - `Qwen3NextDecoderLayer` = Qwen3-MoE's layer with the token mixer chosen per
//   `layer_types`: `linear_attention` → `Qwen3NextGatedDeltaNet` (GatedDeltaNet.swift),
//   `full_attention` → `Qwen3NextAttention` (q_proj emits per head [query | gate], the output
//   × σ(gate) before o_proj; per-head q/k norm; partial rotary, default 0.25).
// - Every RMSNorm of the stack (layer norms, final norm, q/k norms) is Gemma's zero-centred
//   `(1 + w)` one; the DeltaNet's gated norm is not (its weight multiplies as stored).
// - `Qwen2MoeSparseMoeBlock`: softmax top-k router (`norm_topk_prob`, default true), routed
//   experts, one `shared_expert` scaled by σ(`shared_expert_gate`(x)); `mlp_only_layers` and
//   `decoder_sparse_step` as Qwen3-MoE.
// - The MTP layer (`mtp.*`, one in released checkpoints; `mtp_num_hidden_layers` where the config
//   says) is not part of plain decoding and transformers does not load it: mapped only for
//   `--speculative mtp` (MultiTokenPrediction.swift, vLLM's `Qwen3NextMultiTokenPredictor`:
//   `fc`, `pre_fc_norm_embedding`, `pre_fc_norm_hidden`, one full-attention decoder layer, `norm`).

import Foundation

/// `Qwen3NextConfig`: Qwen3-MoE's keys (Qwen3MoeConfiguration) with Qwen3-Next's defaults
/// where they differ, and the linear-attention keys.
struct Qwen3NextConfiguration: Decodable {
    var base: Qwen3MoeConfiguration
    var sharedExpertIntermediateSize: Int
    var layerTypes: [String]
    var linear: LinearAttentionShape
    var predictionLayers: Int

    /// Qwen3NextConfig's defaults for the shared keys.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 151_936, hiddenSize: 2048, intermediateSize: 5632, numHiddenLayers: 48, numAttentionHeads: 16,
        numKeyValueHeads: 2, headDim: 256, maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10_000,
        partialRotaryFactor: 0.25)

    enum CodingKeys: String, CodingKey {
        case numExperts = "num_experts", numExpertsPerTok = "num_experts_per_tok", normTopkProb = "norm_topk_prob"
        case moeIntermediateSize = "moe_intermediate_size"
        case sharedExpertIntermediateSize = "shared_expert_intermediate_size"
        case layerTypes = "layer_types", fullAttentionInterval = "full_attention_interval"
        case linearConvKernelDim = "linear_conv_kernel_dim", linearKeyHeadDim = "linear_key_head_dim"
        case linearValueHeadDim = "linear_value_head_dim", linearNumKeyHeads = "linear_num_key_heads"
        case linearNumValueHeads = "linear_num_value_heads"
        case useSlidingWindow = "use_sliding_window"
        case mtpNumHiddenLayers = "mtp_num_hidden_layers"
    }

    init(from decoder: Decoder) throws {
        base = try Qwen3MoeConfiguration(from: decoder, defaults: Self.defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Qwen3NextConfig's MoE defaults where Qwen3MoeConfig's differ (the expert count
        // under `num_experts` only).
        base.moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 512
        base.numExperts = try c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 512
        base.numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 10
        base.normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? true
        if try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) == true {
            throw ConfigurationError(field: "use_sliding_window", reason: "Qwen3NextAttention has no sliding window")
        }
        // Qwen3-Next's config.json does not say; its checkpoints carry one MTP layer.
        predictionLayers = try c.decodeIfPresent(Int.self, forKey: .mtpNumHiddenLayers) ?? 1
        sharedExpertIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .sharedExpertIntermediateSize) ?? 512
        let interval = try c.decodeIfPresent(Int.self, forKey: .fullAttentionInterval) ?? 4
        guard interval >= 1 else { throw ConfigurationError(field: "full_attention_interval", reason: "must be at least 1") }
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
            ?? (0..<base.core.numHiddenLayers).map { ($0 + 1) % interval == 0 ? "full_attention" : "linear_attention" }
        linear = LinearAttentionShape(
            keyHeads: try c.decodeIfPresent(Int.self, forKey: .linearNumKeyHeads) ?? 16,
            valueHeads: try c.decodeIfPresent(Int.self, forKey: .linearNumValueHeads) ?? 32,
            keyHeadDimension: try c.decodeIfPresent(Int.self, forKey: .linearKeyHeadDim) ?? 128,
            valueHeadDimension: try c.decodeIfPresent(Int.self, forKey: .linearValueHeadDim) ?? 128,
            convolutionKernel: try c.decodeIfPresent(Int.self, forKey: .linearConvKernelDim) ?? 4)
    }

    func description() throws -> ModelDescription {
        let l = linear
        guard l.keyHeads > 0, l.valueHeads > 0, l.valueHeads % l.keyHeads == 0 else {
            throw ConfigurationError(field: "linear_num_value_heads",
                                     reason: "\(l.valueHeads) is not a positive multiple of linear_num_key_heads \(l.keyHeads)")
        }
        guard l.keyHeadDimension > 0, l.valueHeadDimension > 0 else {
            throw ConfigurationError(field: "linear_key_head_dim", reason: "head dimensions must be positive")
        }
        guard l.convolutionKernel >= 1 else { throw ConfigurationError(field: "linear_conv_kernel_dim", reason: "must be at least 1") }
        guard base.core.hiddenAct == "silu" else {
            throw ConfigurationError(field: "hidden_act", reason: "'\(base.core.hiddenAct)' is not supported (Qwen3-Next uses silu)")
        }
        let linearLayers = try LayerTypes.linear(layerTypes, layers: base.core.numHiddenLayers)
        var description = try base.description()
        description.architecture = .qwen3Next
        description.useQwen3NextBlocks(linear: l, linearLayers: linearLayers)
        description.zeroCentredNorms = true
        description.sharedExpertIntermediateSize = sharedExpertIntermediateSize
        description.ignoredPredictionLayers = predictionLayers
        description.predictionNames = .qwen3Next
        return description
    }
}

extension ModelDescription {
    /// Qwen3-Next's blocks, from a checkpoint or a GGUF file alike: Gated DeltaNet `linear` in
    /// the layers `linearLayers` marks, gated full attention in the others, the sigmoid-gated
    /// `shared_expert`.
    mutating func useQwen3NextBlocks(linear: LinearAttentionShape, linearLayers: [Bool]) {
        attention.queryGate = true
        linearAttention = linear
        linearAttentionLayers = linearLayers
        moeNames.sharedExperts = "shared_expert."
        moeNames.sharedExpertGate = "shared_expert_gate.weight"
    }
}

enum Qwen3NextFamily: ArchitectureDefinition {
    static let architecture = Architecture.qwen3Next
    static let modelTypes = ["qwen3_next"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Qwen3NextConfiguration.self, configJSON) }
}

extension Qwen3NextConfiguration: DescribedConfiguration {}
