// gpt-oss (`gpt_oss`, 20B and 120B), mirroring transformers' `models/gpt_oss/
// modeling_gpt_oss.py`:
// - `GptOssAttention`: GQA with biases on q/k/v/o, rotary over the whole head in halves
//   (YaRN by default: factor 32 over 4096 positions, `truncate: false`), and a learned sink
//   logit per head that joins each softmax's denominator (`eager_attention_forward`:
//   `cat([scores, sinks])`, softmax, drop the sink); `layer_types` alternate
//   sliding-window (`sliding_window`, 128) and full layers.
// - `GptOssDecoderLayer`: pre-norm, every layer MoE, no shared experts.
// - `GptOssTopKRouter`: `F.linear(x, weight, bias)`, top-k of the logits, softmax over the
//   chosen logits (`ScoringFunction.softmaxTopK`).
// - `GptOssExperts`: `gate_up_proj` [E, hidden, 2·I] input-major with gate and up in
//   alternating columns and a bias, the clamped SwiGLU `(clamp(up, ±limit) + 1) · g ·
//   σ(alpha · g)` with `g = min(gate, limit)`, `down_proj` with a bias
//   (`ExpertStorage.interleavedWithBias`, `ExpertActivation.clampedSwiglu`).
// - Released checkpoints keep the experts in MXFP4 (`quantization_config.quant_method:
//   mxfp4`, `*_blocks` / `*_scales`): they stay MXFP4 in memory (MXFP4.repackedRows).
// `hidden_act` is not read by the modeling file (the experts always use the clamped SwiGLU).

import Foundation
import JindouNumerics
import JindouRouting

enum GptOssFamily: ArchitectureDefinition {
    static let architecture = Architecture.gptOss
    static let modelTypes = ["gpt_oss"]
    static let quantizationMethods = ["mxfp4"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(GptOssConfiguration.self, configJSON) }
}

/// `GptOssConfig`, read from either config style (see `RopeSettings`).
struct GptOssConfiguration: DescribedConfiguration {
    var core: DecoderCore
    var slidingWindow: Int?
    var layerTypes: [String]?
    var numLocalExperts: Int
    var numExpertsPerTok: Int
    var swigluAlpha: Double
    var swigluLimit: Double
    var quantMethod: String?

    /// GptOssConfig's defaults (its default YaRN rope is set in `init` when the config names none).
    static let defaults = DecoderCore.Defaults(
        vocabSize: 201_088, hiddenSize: 2880, intermediateSize: 2880, numHiddenLayers: 36, numAttentionHeads: 64,
        numKeyValueHeads: 8, headDim: 64, maxPositionEmbeddings: 131_072, rmsNormEps: 1e-5, ropeTheta: 150_000,
        attentionBias: true)

    enum CodingKeys: String, CodingKey {
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case slidingWindow = "sliding_window"
        case layerTypes = "layer_types"
        case numLocalExperts = "num_local_experts"
        case numExperts = "num_experts"
        case numExpertsPerTok = "num_experts_per_tok"
        case expertsPerToken = "experts_per_token"
        case swigluAlpha = "swiglu_alpha"
        case swigluLimit = "swiglu_limit"
        case quantizationConfig = "quantization_config"
    }

    private struct Quantization: Decodable {
        let quantMethod: String?
        enum CodingKeys: String, CodingKey { case quantMethod = "quant_method" }
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are GptOssConfig's.
        if !c.contains(.ropeParameters) && !c.contains(.ropeScaling) {
            // GptOssConfig.__post_init__'s rope when the config names none.
            (core.rope.type, core.rope.factor, core.rope.betaFast, core.rope.betaSlow, core.rope.truncate, core.rope.originalMaxPositions) =
                ("yarn", 32, 32, 1, false, 4096)
        }
        slidingWindow = try c.contains(.slidingWindow) ? c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 128
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        numLocalExperts = try c.decodeIfPresent(Int.self, forKey: .numLocalExperts)
            ?? c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 128
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok)
            ?? c.decodeIfPresent(Int.self, forKey: .expertsPerToken) ?? 4
        swigluAlpha = try c.decodeIfPresent(Double.self, forKey: .swigluAlpha) ?? 1.702
        swigluLimit = try c.decodeIfPresent(Double.self, forKey: .swigluLimit) ?? 7.0
        quantMethod = try c.decodeIfPresent(Quantization.self, forKey: .quantizationConfig)?.quantMethod
    }

    func description() throws -> ModelDescription {
        let (numHiddenLayers, hiddenSize, intermediateSize) = (core.numHiddenLayers, core.hiddenSize, core.intermediateSize)
        // GptOssConfig.__post_init__: odd layers (1-based) slide.
        let types = layerTypes ?? (0..<numHiddenLayers).map { ($0 + 1) % 2 == 1 ? "sliding_attention" : "full_attention" }
        let slides = try LayerTypes.sliding(types, layers: numHiddenLayers)
        if slides.contains(true) && (slidingWindow ?? 0) < 1 {
            throw ConfigurationError(field: "sliding_window", reason: "sliding_attention layers need a window of at least 1")
        }
        let mxfp4: Bool
        switch quantMethod {
        case nil: mxfp4 = false
        case "mxfp4": mxfp4 = true
        case let other?:
            throw ConfigurationError(field: "quantization_config.quant_method", reason: "'\(other)' is not supported for gpt-oss (supported: mxfp4)")
        }
        if mxfp4 {
            for (field, width) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize)] where width % MXFP4.blockSize != 0 {
                throw ConfigurationError(field: field, reason: "\(width) is not a whole number of \(MXFP4.blockSize)-wide MXFP4 blocks")
            }
        }
        var attention = try core.groupedAttention(queryKeyNorm: false, queryKeyValueBias: core.attentionBias, outputBias: core.attentionBias)
        attention.layerWindows = slides.map { $0 ? slidingWindow : nil }
        attention.sinks = true
        var description = core.description(
            architecture: .gptOss,
            attention: attention,
            layers: Array(repeating: .sparse, count: numHiddenLayers),
            router: RouterConfiguration(expertCount: numLocalExperts, expertsPerToken: numExpertsPerTok, scoring: .softmaxTopK,
                                        normalizeTopK: true),
            hasCorrectionBias: false, moeIntermediateSize: intermediateSize,
            sharedExpertIntermediateSize: nil)
        description.moeNames.router = "router.weight"
        description.moeNames.routerBias = "router.bias"
        description.expertStorage = .interleavedWithBias(mxfp4: mxfp4)
        description.expertActivation = .clampedSwiglu(alpha: Float(swigluAlpha), limit: Float(swigluLimit))
        return description
    }
}
