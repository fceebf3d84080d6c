// ERNIE-4.5-MoE (21B-A3B, 300B-A47B), mirroring transformers' `models/ernie4_5_moe/
// modular_ernie4_5_moe.py`:
// - `Ernie4_5_MoeAttention(LlamaAttention)`: GQA without q/k norm; `use_bias` would put
//   biases on q/k/v/o and on every MLP (refused: no released checkpoint sets it).
// - `Ernie4_5_MoeRotaryEmbedding` + `apply_rotary_pos_emb`: full-width rotary on adjacent
//   pairs (cos/sin of the first half repeated per pair, the interleaved `rotate_half`) —
//   Jindou's interleaved rotary (its output layout differs, q and k alike, so q·k does not).
// - `Ernie4_5_MoeDecoderLayer(Qwen3MoeDecoderLayer)`: a layer is sparse when
//   `(layer + 1) % moe_layer_interval == 0` and `moe_layer_start_index ≤ layer ≤
//   moe_layer_end_index` (−1: the last layer), else a dense MLP of `intermediate_size`.
// - `Ernie4_5_MoeSparseMoeBlock`: routed experts plus, with `moe_num_shared_experts`, one
//   shared MLP of `moe_intermediate_size × moe_num_shared_experts`, added ungated.
// - `Ernie4_5_MoeTopKRouter`: softmax in fp32, the choice on softmax + `moe_statics.
//   e_score_correction_bias` (stored [1, experts]), weights the chosen softmax values over
//   `clamp(sum, min=moe_norm_min)`; with a softmax the sum of the top-k is ≥ k/experts, far
//   above the 1e-12 floor, so that is Router's plain renormalisation (a floor that could
//   bind is refused).

import Foundation
import JindouRouting

enum Ernie45MoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.ernie45Moe
    static let modelTypes = ["ernie4_5_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Ernie45MoeConfiguration.self, configJSON) }
}

/// `Ernie4_5_MoeConfig`, read from either config style (see `RopeSettings`).
struct Ernie45MoeConfiguration: DescribedConfiguration {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int
    var headDim: Int?
    var hiddenAct: String
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var tieWordEmbeddings: Bool
    var rope: RopeSettings
    var useBias: Bool
    var moeIntermediateSize: Int
    var moeK: Int
    var moeNumExperts: Int
    var moeNumSharedExperts: Int
    var moeLayerStartIndex: Int
    var moeLayerEndIndex: Int
    var moeLayerInterval: Int
    var moeNormMin: Double
    var bosTokenID: Int?
    var eosTokenID: [Int]
    var dtype: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case tieWordEmbeddings = "tie_word_embeddings"
        case ropeParameters = "rope_parameters"
        case ropeTheta = "rope_theta"
        case partialRotaryFactor = "partial_rotary_factor"
        case ropeScaling = "rope_scaling"
        case useBias = "use_bias"
        case moeIntermediateSize = "moe_intermediate_size"
        case moeK = "moe_k"
        case numExpertsPerTok = "num_experts_per_tok"
        case moeNumExperts = "moe_num_experts"
        case numExperts = "num_experts"
        case moeNumSharedExperts = "moe_num_shared_experts"
        case moeLayerStartIndex = "moe_layer_start_index"
        case moeLayerEndIndex = "moe_layer_end_index"
        case moeLayerInterval = "moe_layer_interval"
        case moeNormMin = "moe_norm_min"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are Ernie4_5_MoeConfig's.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 103_424
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 2560
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 12288
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 28
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 20
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? 4
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 131_072
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-5
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: 500_000, defaultPartialFactor: 1)
        useBias = try c.decodeIfPresent(Bool.self, forKey: .useBias) ?? false
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1536
        moeK = try c.decodeIfPresent(Int.self, forKey: .moeK) ?? c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 6
        moeNumExperts = try c.decodeIfPresent(Int.self, forKey: .moeNumExperts) ?? c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 64
        moeNumSharedExperts = try c.decodeIfPresent(Int.self, forKey: .moeNumSharedExperts) ?? 2
        moeLayerStartIndex = try c.decodeIfPresent(Int.self, forKey: .moeLayerStartIndex) ?? 1
        moeLayerEndIndex = try c.decodeIfPresent(Int.self, forKey: .moeLayerEndIndex) ?? -1
        moeLayerInterval = try c.decodeIfPresent(Int.self, forKey: .moeLayerInterval) ?? 1
        moeNormMin = try c.decodeIfPresent(Double.self, forKey: .moeNormMin) ?? 1e-12
        bosTokenID = try c.specialToken(.bosTokenID, default: 1)
        eosTokenID = try c.specialTokens(.eosTokenID, default: [2])
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    func description() throws -> ModelDescription {
        guard hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(hiddenAct)' is not supported (silu only)") }
        guard !useBias else { throw ConfigurationError(field: "use_bias", reason: "MLP biases are not supported yet (no released ERNIE-4.5 checkpoint sets use_bias)") }
        guard moeLayerInterval >= 1 else { throw ConfigurationError(field: "moe_layer_interval", reason: "must be at least 1") }
        guard moeNumExperts >= 1 else { throw ConfigurationError(field: "moe_num_experts", reason: "must be at least 1") }
        // The smallest top-k sum a softmax can give; a floor above it would change weights.
        guard moeNormMin < Double(max(1, moeK)) / Double(moeNumExperts) / 2 else {
            throw ConfigurationError(field: "moe_norm_min", reason: "a floor that can bind (\(moeNormMin)) is not supported")
        }
        let end = moeLayerEndIndex == -1 ? numHiddenLayers - 1 : moeLayerEndIndex
        let headDimension = headDim ?? hiddenSize / max(1, numAttentionHeads)
        var description = ModelDescription(
            architecture: .ernie45Moe,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: AttentionShape(
                heads: numAttentionHeads, keyValueHeads: numKeyValueHeads, headDimension: headDimension,
                rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: rope.theta,
                queryKeyNorm: false, queryKeyValueBias: false, outputBias: false, slidingWindow: nil,
                ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings), interleavedRotary: true),
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            // Ernie4_5_MoeDecoderLayer.__init__
            layers: (0..<numHiddenLayers).map { layer in
                (layer + 1) % moeLayerInterval == 0 && layer >= moeLayerStartIndex && layer <= end
                    ? .sparse : .dense(intermediateSize: intermediateSize)
            },
            router: RouterConfiguration(expertCount: moeNumExperts, expertsPerToken: moeK, scoring: .softmax, normalizeTopK: true),
            hasCorrectionBias: true,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: moeNumSharedExperts > 0 ? moeIntermediateSize * moeNumSharedExperts : nil,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: dtype)
        description.moeNames.correctionBias = "moe_statics.e_score_correction_bias"
        description.moeNames.correctionBiasIsRow = true
        return description
    }
}
