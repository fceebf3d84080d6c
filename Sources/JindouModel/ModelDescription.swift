import Foundation
import JindouNumerics
import JindouRouting

/// The architectures Jindou serves, by the `architectures` name in config.json.
public enum Architecture: String, Sendable, CaseIterable, Codable {
    case qwen3Moe = "Qwen3MoeForCausalLM"
    case glm4Moe = "Glm4MoeForCausalLM"
    /// DeepSeek-V3 / V3.1 and Kimi-K2 (`model_type` `deepseek_v3` or `kimi_k2`).
    case deepseekV3 = "DeepseekV3ForCausalLM"
    /// Qwen3-VL-MoE (30B-A3B, 235B-A22B): the Qwen3-MoE text model with M-RoPE and
    /// DeepStack, plus a vision tower on the coordinator.
    case qwen3VLMoe = "Qwen3VLMoeForConditionalGeneration"
    /// MiniMax-M2 / M2.1 (229B-A10B).
    case miniMaxM2 = "MiniMaxM2ForCausalLM"
    /// dots.llm1 (142B-A14B): Qwen3 attention on DeepSeek-V3's MoE.
    case dots1 = "Dots1ForCausalLM"
    /// Hunyuan-A13B (80B-A13B).
    case hunyuanMoe = "HunYuanMoEV1ForCausalLM"
    /// GLM-4.7-Flash (30B-A3B): DeepSeek-V3's latent attention with GLM4-MoE's experts.
    case glm4MoeLite = "Glm4MoeLiteForCausalLM"
    /// ERNIE-4.5-MoE (21B-A3B, 300B-A47B).
    case ernie45Moe = "Ernie4_5_MoeForCausalLM"
    /// gpt-oss (20B, 120B): attention sinks, biased experts with a clamped SwiGLU, MXFP4 experts.
    case gptOss = "GptOssForCausalLM"
    /// Arcee's Trinity (Nano, Mini, Large): sandwich norms, gated attention output, NoPE global layers.
    case afmoe = "AfmoeForCausalLM"
    /// K-EXAONE (236B-A23B): sliding layers with rotary, global layers without (NoPE).
    case exaoneMoe = "ExaoneMoeForCausalLM"
    /// DeepSeek-V3.2 (671B-A37B): DeepSeek-V3 with DeepSeek Sparse Attention (a lightning
    /// indexer picks the top-k past positions each query attends to).
    case deepseekV32 = "DeepseekV32ForCausalLM"
    /// GLM-5 (744B-A40B): DeepSeek-V3.2's sparse attention with an interleaved-rotary indexer,
    /// some layers reusing the previous layer's selection.
    case glmMoeDsa = "GlmMoeDsaForCausalLM"
    /// LongCat-Flash (560B): two MLA and two dense sub-blocks per layer with a shortcut MoE
    /// whose router may choose zero-computation (identity) experts.
    case longcatFlash = "LongcatFlashForCausalLM"
    /// Kimi-K2.5 / K2.6 (1T-A32B): Kimi-K2's text model with the MoonViT-3D vision tower.
    case kimiK25 = "KimiK25ForConditionalGeneration"
    /// Qwen3-Next (80B-A3B): Gated DeltaNet linear attention in three of every four layers,
    /// gated full attention in the fourth, 512 experts with a gated shared expert.
    case qwen3Next = "Qwen3NextForCausalLM"
    /// Qwen3.5-MoE (35B-A3B, 122B-A10B, 397B-A17B): Qwen3-Next's text stack with split DeltaNet
    /// projections and interleaved M-RoPE, and Qwen3-VL's vision tower without DeepStack.
    case qwen35Moe = "Qwen3_5MoeForConditionalGeneration"
    /// Kimi-Linear (48B-A3B): Kimi Delta Attention in three of every four layers, MLA without
    /// rotary in the fourth, DeepSeek-V3's MoE.
    case kimiLinear = "KimiLinearForCausalLM"
    /// Ling-3.0-Flash (`bailing_hybrid`): Ling's KDA in five of every six layers, gated MLA in the sixth.
    case bailingHybrid = "BailingHybridForCausalLM"
}

/// Shape of the attention block (GQA with optional q/k norm and partial rotary).
public struct AttentionShape: Sendable, Equatable {
    public var heads: Int
    public var keyValueHeads: Int
    public var headDimension: Int
    /// Features per head that rotate (`head_dim × partial_rotary_factor`).
    public var rotaryDimension: Int
    public var ropeTheta: Double
    /// RMSNorm on q and k before rotary (Qwen3; GLM4 with `use_qk_norm`; MiniMax-M2).
    public var queryKeyNorm: Bool
    /// Over what that norm runs: each head (Qwen3, GLM4) or the whole projection (MiniMax-M2).
    public var queryKeyNormScope: QueryKeyNormScope = .perHead
    /// The norm runs on the rotated q and k (Hunyuan) instead of before rotary.
    public var queryKeyNormAfterRotary: Bool = false
    /// The norms' modules within `self_attn.` (`q_norm`/`k_norm`; Hunyuan: `query_layernorm`/`key_layernorm`).
    public var queryNormName = "q_norm", keyNormName = "k_norm"
    /// Biases on q/k/v projections (`attention_bias`).
    public var queryKeyValueBias: Bool
    /// A learned logit per head (`self_attn.sinks`) that joins each softmax's denominator
    /// and is dropped from its weights (gpt-oss).
    public var sinks = false
    /// Bias on the output projection (Qwen3 with `attention_bias`; never GLM4).
    public var outputBias: Bool
    /// A sigmoid gate on the attention output before `o_proj`: `output · σ(gate_proj(x))`,
    /// one gate per head feature (Trinity's `self_attn.gate_proj`).
    public var outputGate = false
    /// The gate comes from `q_proj` itself, which emits per head [query | gate] (Qwen3-Next's
    /// gated attention: `output · σ(gate)` before `o_proj`).
    public var queryGate = false
    /// Sliding-window attention span, if the checkpoint enables it.
    public var slidingWindow: Int?
    /// Per decoder layer, when layers differ (`layer_types`): that layer's window, nil for
    /// full attention. nil: `slidingWindow` for every layer.
    public var layerWindows: [Int?]? = nil
    /// Per decoder layer, when layers differ: whether rotary applies (false: NoPE, EXAONE's
    /// global layers). nil: every layer rotates.
    public var layerRotary: [Bool]? = nil
    /// Frequency scaling of the rotary embedding (`rope_type`).
    public var ropeScaling: RopeScaling = .none
    /// Rotary pairs are adjacent features (DeepSeek's `rope_interleave`) instead of halves.
    public var interleavedRotary: Bool = false
    /// Interleaved M-RoPE (`mrope_section` [t, h, w] frequencies, Qwen3-VL).
    public var mropeSection: [Int]? = nil

    public var scale: Float { 1 / Float(headDimension).squareRoot() }

    /// Whether decoder layer `layer` applies rotary to q and k.
    public func rotates(layer: Int) -> Bool {
        guard let layerRotary, layerRotary.indices.contains(layer) else { return true }
        return layerRotary[layer]
    }

    /// The attention window of decoder layer `layer` (nil: every earlier position).
    public func window(layer: Int) -> Int? {
        guard let layerWindows, layerWindows.indices.contains(layer) else { return slidingWindow }
        return layerWindows[layer]
    }
}

/// Which delta-rule linear attention a layer runs.
public enum LinearAttentionKind: String, Sendable, Equatable {
    /// Qwen3-Next's / Qwen3.5's Gated DeltaNet: one decay per head and token, SiLU-gated norm.
    case gatedDeltaNet
    /// Kimi Delta Attention (Kimi-Linear): one decay per key channel from a low-rank forget gate,
    /// a low-rank output gate through a sigmoid-gated norm, q/k/v projected separately.
    case kimiDelta
    /// Ling's KDA (`BailingHybridDeltaAttention`): Kimi's with full-rank forget and output gates
    /// (`f_proj`, `g_proj`) and, with `forgetGateLowerBound`, the bounded forget gate.
    case lingDelta
}

/// A delta-rule linear attention's shape (Qwen3-Next's `linear_*` config keys, Kimi-Linear's
/// `linear_head_dim`/`linear_num_heads`).
public struct LinearAttentionShape: Sendable, Equatable {
    public var kind = LinearAttentionKind.gatedDeltaNet
    /// Ling's `kda_safe_gate`: g = lower bound · σ(exp(A_log) · (f + dt_bias)) instead of
    /// −exp(A_log) · softplus(f + dt_bias); nil: the softplus form.
    public var forgetGateLowerBound: Float? = nil
    public var keyHeads: Int
    public var valueHeads: Int
    public var keyHeadDimension: Int
    public var valueHeadDimension: Int
    /// The causal depthwise convolution's kernel (`linear_conv_kernel_dim`).
    public var convolutionKernel: Int
    /// How the Gated DeltaNet's input projections are stored.
    public var projections = LinearProjectionLayout.fused
    /// What the `A_log` tensor holds: A_log itself in checkpoints; llama.cpp's converter stores
    /// −exp(A_log) (`ssm_a` of qwen3next, qwen35moe, kimi-linear) or exp(A_log) (bailingmoe3).
    public var storedDecay = StoredDecay.logarithm
    /// Value head h reads key head h mod key heads (llama.cpp's Qwen3.5 files, whose converter
    /// reorders the value heads for ggml's broadcast), not h / (value heads / key heads).
    public var tiledValueHeads = false

    public var keyWidth: Int { keyHeads * keyHeadDimension }
    public var valueWidth: Int { valueHeads * valueHeadDimension }
    /// Channels the convolution runs over: [q | k | v].
    public var convolutionChannels: Int { 2 * keyWidth + valueWidth }
    /// Floats of one sequence's state in one layer, whatever its length: the convolution's
    /// last kernel − 1 inputs, then the fp32 recurrent state (value heads × key dim × value dim).
    public var stateFloats: Int {
        (convolutionKernel - 1) * convolutionChannels + valueHeads * keyHeadDimension * valueHeadDimension
    }
}

/// The names of a checkpoint's multi-token-prediction layer: its block (a whole decoder
/// layer) and the tensors around it (MultiTokenPrediction.swift).
public struct PredictionLayerNames: Sendable, Equatable {
    /// The blocks' prefix before their index: nil for layers numbered after the decoder's
    /// (`model.layers.{L}.`, DeepSeek-V3, GLM-4.5); Qwen3-Next's `mtp.layers.`.
    public var layersPrefix: String?
    /// The embedding norm, hidden norm, [2H → H] projection and output norm, each a full name
    /// after `ownPrefix` (nil: the block's own prefix).
    public var ownPrefix: String?
    public var embeddingNorm = "enorm.weight"
    public var hiddenNorm = "hnorm.weight"
    public var projection = "eh_proj.weight"
    public var outputNorm = "shared_head.norm.weight"

    /// DeepSeek-V3's (`model.layers.61.{enorm, hnorm, eh_proj, shared_head.norm}`).
    public static let deepseek = PredictionLayerNames()
    /// Qwen3-Next's and Qwen3.5's (vLLM's `Qwen3NextMultiTokenPredictor`): `mtp.fc`,
    /// `mtp.pre_fc_norm_embedding`, `mtp.pre_fc_norm_hidden`, `mtp.norm`, `mtp.layers.0.*`.
    public static let qwen3Next = PredictionLayerNames(
        layersPrefix: "mtp.layers.", ownPrefix: "mtp.", embeddingNorm: "pre_fc_norm_embedding.weight",
        hiddenNorm: "pre_fc_norm_hidden.weight", projection: "fc.weight", outputNorm: "norm.weight")
}

/// How a linear-attention layer's `A_log` is stored (the decay rate is −exp(A_log)).
public enum StoredDecay: Sendable, Equatable {
    case logarithm, negatedExponential, exponential
}

/// How a Gated DeltaNet layer stores its input projections.
public enum LinearProjectionLayout: Sendable, Equatable {
    /// Qwen3-Next's `in_proj_qkvz` and `in_proj_ba`, both grouped per key head.
    case fused
    /// Qwen3.5's `in_proj_qkv`, `in_proj_z`, `in_proj_b` and `in_proj_a`.
    case split
    /// llama.cpp's Qwen3-Next (convert_hf_to_gguf.py `Qwen3NextModel`): `in_proj_qkvz` split
    /// into [q | k | v] (`in_proj_qkv`, GGUF `attn_qkv`) and z (`in_proj_z`, `attn_gate`),
    /// `in_proj_ba` kept grouped per key head (`ssm_ba`).
    case splitQKVZ
}

/// What a q/k RMSNorm normalises over.
public enum QueryKeyNormScope: Sendable, Equatable {
    /// Each head's `head_dim` features (weight of `head_dim`).
    case perHead
    /// The whole projection, all heads at once (weight of `heads × head_dim`).
    case wholeProjection
}

/// `rope_type` and its parameters, resolved as transformers' `modeling_rope_utils` does.
public enum RopeScaling: Sendable, Equatable {
    case none
    case yarn(YarnScaling)
}

/// YaRN parameters after transformers' defaults are applied (`_compute_yarn_parameters`).
public struct YarnScaling: Sendable, Equatable {
    public var factor: Double
    public var originalMaxPositions: Int
    public var betaFast: Double
    public var betaSlow: Double
    /// Multiplier on cos/sin: `attention_factor`, or get_mscale(factor, mscale) /
    /// get_mscale(factor, mscale_all_dim) when both are set, or get_mscale(factor).
    public var attentionFactor: Double
    /// `mscale_all_dim` (DeepSeek also scales the softmax by get_mscale(factor, it)²).
    public var mscaleAllDim: Double?
    public var truncate: Bool

    /// `yarn_get_mscale` / `get_mscale`.
    public static func mscale(_ scale: Double, _ mscale: Double = 1) -> Double {
        scale <= 1 ? 1 : 0.1 * mscale * log(scale) + 1
    }
}

/// Multi-head Latent Attention (DeepSeek-V2/V3, Kimi-K2): queries through an optional
/// low-rank projection, keys and values from one shared latent of `keyValueLoraRank`
/// features plus a single rotary key of `ropeDimension` features.
public struct LatentAttentionShape: Sendable, Equatable {
    public var heads: Int
    /// `q_lora_rank`; nil means a plain `q_proj`.
    public var queryLoraRank: Int?
    public var keyValueLoraRank: Int
    /// `qk_nope_head_dim`: query/key features per head without position.
    public var nopeDimension: Int
    /// `qk_rope_head_dim`: rotary features (per query head; one shared key).
    public var ropeDimension: Int
    /// `v_head_dim`.
    public var valueDimension: Int
    /// `attention_bias`: biases on q_a_proj, kv_a_proj_with_mqa and o_proj.
    public var bias: Bool
    /// qk_head_dim^-0.5, times get_mscale(factor, mscale_all_dim)² under YaRN (`yarn_apply_mscale`).
    public var softmaxScale: Float
    /// The RMSNorm epsilon of q_a_layernorm and kv_a_layernorm (DeepseekV3RMSNorm's default).
    public var latentNormEpsilon: Float = 1e-6
    /// Rotary on q_rot and k_rot (false: Kimi-Linear's MLA, whose "rope" part is never rotated).
    public var rotary = true
    /// The output projection's module (`o_proj`; Ling's `dense`).
    public var outputName = "o_proj"
    /// A sigmoid gate per head on the attended values before the output projection
    /// (`g_proj`, hidden → heads: Ling's `BailingHybridAttention`).
    public var headGate = false
    /// kv_b_proj whole (Hugging Face) or split per head (llama.cpp's attn_k_b / attn_v_b).
    public var upProjections: LatentUpProjections = .joint

    /// DeepSeek Sparse Attention's lightning indexer (DeepSeek-V3.2); nil: dense MLA.
    public var indexer: SparseIndexerShape? = nil
    /// LongCat-Flash's LoRA scaling: q (after q_b_proj) × `queryScale`, the normed latent c
    /// × `latentScale` (√(hidden / q_lora_rank), √(hidden / kv_lora_rank)); 1 elsewhere.
    public var queryScale: Float = 1
    public var latentScale: Float = 1

    public var queryKeyDimension: Int { nopeDimension + ropeDimension }
    /// Floats of the cached latent row attention reads: the normed latent and the rotated key.
    public var cacheRowWidth: Int { keyValueLoraRank + ropeDimension }
    /// Floats cached per token and layer: the latent row, then the indexer's key when the
    /// layer has an indexer (its own cache, stored beside the latent so both live and
    /// roll back together).
    public var cacheRowStride: Int { cacheRowWidth + (indexer?.headDimension ?? 0) }
}

/// LongCat-Flash's dense sub-blocks (`mlps.0`, `mlps.1`): their intermediate width
/// (`ffn_hidden_size`).
public struct ShortcutSublayerShape: Sendable, Equatable {
    public var intermediateSize: Int
    public init(intermediateSize: Int) { self.intermediateSize = intermediateSize }
}

/// `DeepseekV32Indexer`: per query, scores every past position by
/// Σ_h w_h · relu(scale · q_h·k), q_h = wq_b(q-LoRA latent) per head, k = LayerNorm(wk(x)),
/// both rotated (half-split rotary) on their first `ropeDimension` features, w = weights_proj(x)
/// / √heads, scale = headDimension^-0.5; attention then runs over the `topK` best positions.
public struct SparseIndexerShape: Sendable, Equatable {
    /// `index_n_heads`.
    public var heads: Int
    /// `index_head_dim`.
    public var headDimension: Int
    /// `index_topk`.
    public var topK: Int
    /// `qk_rope_head_dim`: the rotated prefix of each indexer head and of its key.
    public var ropeDimension: Int
    /// nn.LayerNorm's epsilon on the indexer key.
    public var keyNormEpsilon: Float = 1e-6
    /// The indexer's rotary on (x0, x1), (x2, x3)… pairs (GLM-5's
    /// `apply_rotary_pos_emb_interleave`) instead of DeepSeek-V3.2's half-split pairs.
    public var interleavedRotary = false
    /// Layers without an indexer of their own (GLM-5's `indexer_types` "shared"): their
    /// queries attend to the positions the last indexer layer before them chose for the
    /// same token in the same step.
    public var sharedLayers: Set<Int> = []

    /// Whether `layer` runs an indexer (and has its weights and its keys cached).
    public func hasIndexer(layer: Int) -> Bool { !sharedLayers.contains(layer) }

    public init(heads: Int, headDimension: Int, topK: Int, ropeDimension: Int) {
        self.heads = heads
        self.headDimension = headDimension
        self.topK = topK
        self.ropeDimension = ropeDimension
    }
}

/// How a checkpoint stores routed experts.
public enum ExpertStorage: Sendable, Equatable {
    /// `…mlp.experts.E.{gate,up,down}_proj.weight`, each [out, in].
    case perExpert
    /// `…mlp.experts.gate_up_proj` and `…mlp.experts.down_proj`: all experts of a layer
    /// stacked in one tensor (Qwen3-VL-MoE). Either output-major ([E, 2·moe, hidden] and
    /// [E, hidden, moe], what transformers 5 writes; read in place) or input-major
    /// ([E, hidden, 2·moe] and [E, moe, hidden], Hub releases; transposed once at load).
    /// As transformers' `Transpose(check_dims=True)` does, the output-major reading wins
    /// when both shapes coincide (hidden = 2·moe).
    case fused
    /// gpt-oss (`GptOssExperts`): `gate_up_proj` [E, hidden, 2·moe] (input-major) whose
    /// columns alternate gate and up, `down_proj` [E, moe, hidden], and biases
    /// `gate_up_proj_bias` [E, 2·moe] (alternating too) and `down_proj_bias` [E, hidden].
    /// With `mxfp4`, as released: each matrix as `_blocks` [E, out, in/32, 16] and `_scales`
    /// [E, out, in/32] (output-major MXFP4; the biases stay in the float dtype).
    case interleavedWithBias(mxfp4: Bool)
}

/// What runs between an expert's gate/up and down projections.
public enum ExpertActivation: Sendable, Equatable {
    /// `silu(gate) · up`.
    case swiglu
    /// gpt-oss's `(clamp(up, ±limit) + 1) · g · σ(alpha · g)` with `g = min(gate, limit)`.
    case clampedSwiglu(alpha: Float, limit: Float)
}

/// Which vision tower a checkpoint carries (VisionTower.swift runs both).
public enum VisionTowerKind: String, Sendable, Equatable {
    /// Qwen3-VL's (`Qwen3VLMoeVisionModel`): merge-block patch order, bilinear position
    /// table, DeepStack mergers.
    case qwen3VL
    /// Kimi-K2.5's MoonViT-3D (`Kimi_K25VisionModel` + `Kimi_K25MultimodalProjection`):
    /// raster patch order, bicubic position table, a final LayerNorm, 2×2 merge, projector.
    case moonViT
}

/// A vision tower's shape (`Qwen3VLMoeVisionConfig`, `Kimi_K25VisionConfig`) and the special
/// tokens around images.
public struct VisionTowerShape: Sendable, Equatable {
    public var kind: VisionTowerKind = .qwen3VL
    public var depth: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var heads: Int
    public var inChannels: Int
    public var patchSize: Int
    public var temporalPatchSize: Int
    public var spatialMergeSize: Int
    /// Width of the merged tokens fed to the text model (its hidden size).
    public var outHiddenSize: Int
    /// Learned position table size (a square: side × side).
    public var positionEmbeddings: Int
    /// Vision blocks whose output, merged, is added to the first text layers (DeepStack).
    public var deepstackIndexes: [Int]
    public var ropeTheta: Double
    /// `hidden_act` of the blocks' MLP (`gelu_pytorch_tanh` or `gelu`).
    public var activation: String
    public var imageTokenID: Int
    public var videoTokenID: Int
    public var visionStartTokenID: Int
    public var visionEndTokenID: Int
    /// The blocks' LayerNorm epsilon (Qwen3-VL 1e-6, MoonViT 1e-5).
    public var normEpsilon: Float = 1e-6
    /// MoonViT's projector pre-norm epsilon (`projection_layer_norm_eps`).
    public var projectorNormEpsilon: Float = 1e-5
    /// MoonViT's temporal sinusoid rows (`pos_emb_time`): frames a clip may have.
    public var temporalPositions = 1

    public var headDimension: Int { hiddenSize / heads }
    /// Features per flattened patch: channels × temporal × patch × patch.
    public var patchFeatures: Int { inChannels * temporalPatchSize * patchSize * patchSize }
    public var positionGridSide: Int { Int(Double(positionEmbeddings).squareRoot()) }
}

/// Block-scaled FP8 weights (`quantization_config: {quant_method: fp8, fmt: e4m3,
/// weight_block_size: [R, C]}`): each quantised Linear weight `W` comes with
/// `W_scale_inv` of shape [ceil(rows/R), ceil(cols/C)].
public struct BlockQuantization: Sendable, Equatable {
    public var blockRows: Int
    public var blockColumns: Int

    public init(blockRows: Int, blockColumns: Int) {
        self.blockRows = blockRows
        self.blockColumns = blockColumns
    }

    public func scaleShape(rows: Int, columns: Int) -> [Int] {
        [(rows + blockRows - 1) / blockRows, (columns + blockColumns - 1) / blockColumns]
    }
}

/// A family's tensor names inside a MoE block (after the layer prefix).
public struct MoENames: Sendable, Equatable {
    /// The block's module: `mlp.` (Qwen3, GLM4, DeepSeek) or `block_sparse_moe.` (MiniMax, Mixtral).
    public var block = "mlp."
    /// The router's weight, and the selection bias, within the block.
    public var router = "gate.weight"
    /// The router Linear's own bias, added to its logits (gpt-oss: `router.bias`); nil: none.
    public var routerBias: String? = nil
    public var correctionBias = "gate.e_score_correction_bias"
    /// Per-expert projection modules: gate, up, down (`gate_proj`… or Mixtral's `w1`, `w3`, `w2`).
    public var gate = "gate_proj", up = "up_proj", down = "down_proj"
    /// The selection bias is stored as one row, [1, experts] (ERNIE's `moe_statics`).
    public var correctionBiasIsRow = false
    /// The shared experts' MLP within the block (`shared_experts.`; Hunyuan: `shared_mlp.`).
    public var sharedExperts = "shared_experts."
    /// A Linear(hidden → 1) whose sigmoid scales the shared experts' output (Qwen2-MoE's and
    /// Qwen3-Next's `shared_expert_gate.weight`); nil: none.
    public var sharedExpertGate: String? = nil

    public init() {}

    public static let mixtral: MoENames = {
        var names = MoENames()
        names.block = "block_sparse_moe."
        names.correctionBias = "e_score_correction_bias"
        (names.gate, names.up, names.down) = ("w1", "w3", "w2")
        return names
    }()

    /// The module name of `projection` ("gate", "up" or "down").
    public func projection(_ projection: String) -> String {
        switch projection {
        case "gate": gate
        case "up": up
        default: down
        }
    }
}

/// The RMSNorms of a decoder layer, by module name within the layer. Pre-norm layers (every
/// family but Trinity) have `input` before attention and `preFeedForward` before the MLP;
/// sandwich layers also normalise each block's output before it joins the residual.
public struct LayerNormNames: Sendable, Equatable {
    public var input = "input_layernorm"
    public var preFeedForward = "post_attention_layernorm"
    /// Normalises the attention output (Trinity's `post_attention_layernorm`); nil: none.
    public var attentionOutput: String? = nil
    /// Normalises the feed-forward output (Trinity's `post_mlp_layernorm`); nil: none.
    public var feedForwardOutput: String? = nil

    public init() {}
}

/// What a decoder layer's feed-forward block is.
public enum FeedForwardKind: Sendable, Equatable {
    /// A dense SwiGLU MLP of this intermediate size.
    case dense(intermediateSize: Int)
    /// Routed experts (plus shared experts when `sharedIntermediateSize` is set).
    case sparse
}

/// An architecture-neutral description of a decoder-only MoE checkpoint: what the
/// engine, the worker and the coordinator need to know, parsed from config.json by the
/// architecture's own configuration type (`Qwen3MoeConfiguration`, `Glm4MoeConfiguration`).
public struct ModelDescription: Sendable, Equatable {
    public var architecture: Architecture
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var attention: AttentionShape
    public var rmsNormEpsilon: Float
    public var tieWordEmbeddings: Bool
    /// One entry per decoder layer (`num_hidden_layers`; MTP layers beyond are ignored).
    public var layers: [FeedForwardKind]
    public var router: RouterConfiguration
    /// Whether MoE gates carry `e_score_correction_bias` (GLM4, DeepSeek-V3).
    public var hasCorrectionBias: Bool
    public var moeIntermediateSize: Int
    /// Intermediate size of the shared experts (`moe_intermediate_size × n_shared_experts`).
    public var sharedExpertIntermediateSize: Int?
    public var maxPositionEmbeddings: Int
    public var eosTokenIDs: [Int]
    public var bosTokenID: Int?
    /// Weight dtype declared in config.json (`dtype` or `torch_dtype`), informational.
    public var declaredDType: String?
    /// Multi-head Latent Attention instead of `attention`'s grouped-query attention (DeepSeek-V3).
    public var latentAttention: LatentAttentionShape? = nil
    /// Block-scaled FP8 Linear weights, from `quantization_config`.
    public var weightQuantization: BlockQuantization? = nil
    /// Multi-token-prediction layers stored after the decoder layers (never loaded).
    public var ignoredPredictionLayers: Int = 0
    /// Where the multi-token-prediction layers' tensors are.
    public var predictionNames = PredictionLayerNames.deepseek
    /// Prefix of the text model's tensors (`model.`; Qwen3-VL: `model.language_model.`;
    /// Kimi-K2.5: `language_model.model.`).
    public var textPrefix: String = "model."
    /// The LM head's tensor (Kimi-K2.5: `language_model.lm_head.weight`).
    public var lmHeadName: String = WeightNames.lmHead
    /// How routed experts are stored in the checkpoint.
    public var expertStorage: ExpertStorage = .perExpert
    /// The checkpoint's names inside a MoE block.
    public var moeNames = MoENames()
    /// The routed experts' activation.
    public var expertActivation = ExpertActivation.swiglu
    /// Per-expert storage with a bias per projection (`experts.E.{gate,up,down}_proj.bias`:
    /// gpt-oss in GGUF).
    public var expertBiases = false
    /// The decoder layers' norms.
    public var layerNorms = LayerNormNames()
    /// Multiplies the token embeddings (Trinity with `mup_enabled`: √hidden); nil: none.
    public var embeddingScale: Float? = nil
    /// The vision tower, for vision-language checkpoints.
    public var vision: VisionTowerShape? = nil
    /// Gated DeltaNet (linear attention) in the layers `linearAttentionLayers` marks.
    public var linearAttention: LinearAttentionShape? = nil
    /// Per decoder layer, whether its token mixer is linear attention (empty: none is).
    public var linearAttentionLayers: [Bool] = []
    /// The linear-attention module within a layer (`linear_attn.`; Kimi-Linear: `self_attn.`).
    public var linearAttentionModule = "linear_attn."
    /// The attention module within a layer (`self_attn.`; Ling's Hub names: `attention.`).
    public var attentionModule = "self_attn."
    /// The token embedding's module (`embed_tokens`; Ling's Hub names: `word_embeddings`).
    public var embeddingModule = "embed_tokens"
    /// RMSNorm weights are stored zero-centred and used as `1 + w` (Gemma's and Qwen3-Next's
    /// `RMSNorm`): the layer norms, the final norm and q/k norms; Jindou adds the 1 at load time.
    public var zeroCentredNorms = false
    /// Zero-computation experts (LongCat-Flash's `zero_expert_num`): router choices after the
    /// `expertCount` routed experts whose output is their input, applied on the coordinator.
    public var zeroComputationExperts = 0
    /// LongCat-Flash's shortcut-connected layers (two attention and two dense sub-blocks per
    /// layer, the MoE reading the first's post-attention norm); nil: one of each.
    public var shortcutSublayers: ShortcutSublayerShape? = nil

    /// KV-cache layers: one per attention block (two per shortcut layer).
    public var cacheLayerCount: Int { layers.count * (shortcutSublayers == nil ? 1 : 2) }

    /// Whether cache layer `l` is linear attention (a fixed-size state, no key/value rows).
    public func isLinearAttentionLayer(_ l: Int) -> Bool {
        linearAttention != nil && linearAttentionLayers.indices.contains(l) && linearAttentionLayers[l]
    }

    /// Per cache layer, the floats of fixed per-sequence state it keeps (0: none).
    public var layerStateFloats: [Int] {
        (0..<cacheLayerCount).map { isLinearAttentionLayer($0) ? linearAttention!.stateFloats : 0 }
    }

    /// Bytes of fixed state one sequence holds whatever its length (linear-attention layers).
    public var fixedStateBytes: Int { layerStateFloats.reduce(0, +) * MemoryLayout<Float>.size }

    /// Whether a sequence's memory is more than rows per position: a recurrent state can
    /// neither be cut back to an earlier length nor shared as a prefix (so prefix caching and
    /// speculative decoding are off for such models).
    public var hasRecurrentState: Bool { fixedStateBytes > 0 }

    /// Floats per token and layer in the KV cache: keys and values, or one latent row (MLA).
    public var keyValueCacheWidths: (keys: Int, values: Int) {
        if let latent = latentAttention { return (latent.cacheRowStride, 0) }
        let width = attention.keyValueHeads * attention.headDimension
        return (width, width)
    }

    /// Bytes of KV cache per token over all layers (fp32 rows), were every layer to keep
    /// every position.
    public var keyValueCacheBytesPerToken: Int {
        let widths = keyValueCacheWidths
        let rowLayers = (0..<cacheLayerCount).filter { !isLinearAttentionLayer($0) }.count
        return rowLayers * (widths.keys + widths.values) * MemoryLayout<Float>.size
    }

    /// Per layer, the window its cache keeps (nil: every position): sliding-window layers of
    /// grouped-query attention.
    public var cacheWindows: [Int?] {
        // A linear-attention layer keeps no rows; window 1 keeps it out of the mapped store.
        (0..<cacheLayerCount).map { isLinearAttentionLayer($0) ? 1 : latentAttention == nil ? attention.window(layer: $0) : nil }
    }

    /// KV-cache bytes one sequence of `tokens` positions keeps when no step adds more than
    /// `stepTokens`: full layers every position; a sliding layer at most window − 1 +
    /// stepTokens positions (`KVCache`), whatever the context.
    public func keyValueCacheBytes(tokens: Int, stepTokens: Int) -> Int {
        let widths = keyValueCacheWidths
        let rows = cacheWindows.enumerated().reduce(0) { total, layer in
            if isLinearAttentionLayer(layer.offset) { return total }
            return total + (layer.element.map { min(tokens, $0 - 1 + max(1, stepTokens)) } ?? tokens)
        }
        return rows * (widths.keys + widths.values) * MemoryLayout<Float>.size + fixedStateBytes
    }

    public var layerCount: Int { layers.count }
    /// Routed experts per layer (placed on workers); the router scores these and the
    /// zero-computation experts after them.
    public var expertCount: Int { router.expertCount - zeroComputationExperts }

    /// Indices of the layers with routed experts.
    public var sparseLayers: [Int] {
        layers.indices.filter { layers[$0] == .sparse }
    }

    static func configError(_ error: Error, path: String) -> CheckpointError {
        if let decoding = error as? DecodingError {
            switch decoding {
            case .typeMismatch(let type, let context):
                return .badConfig(path: path, field: context.fieldPath, reason: "expected \(type)")
            case .valueNotFound(let type, let context):
                return .badConfig(path: path, field: context.fieldPath, reason: "expected \(type), found null")
            case .keyNotFound(let key, let context):
                let field = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
                return .badConfig(path: path, field: field, reason: "is required")
            case .dataCorrupted(let context):
                return .badConfig(path: path, field: context.fieldPath.isEmpty ? "(file)" : context.fieldPath,
                                  reason: context.underlyingError.map { "\($0)" } ?? context.debugDescription)
            @unknown default:
                return .badConfig(path: path, field: "(file)", reason: "\(error)")
            }
        }
        return .badConfig(path: path, field: "(file)", reason: "\(error)")
    }
}

extension ModelDescription {
    /// Reads `config.json` (and `generation_config.json` for EOS ids) from a checkpoint.
    public init(checkpoint: Checkpoint) throws {
        let configPath = checkpoint.path(of: "config.json")
        let generationConfig = FileManager.default.contents(atPath: checkpoint.path(of: "generation_config.json"))
        try self.init(configJSON: checkpoint.configData, path: configPath, generationConfigJSON: generationConfig)
    }

    public init(configJSON: Data, path: String, generationConfigJSON: Data? = nil) throws {
        let probe: ArchitectureProbe
        do {
            probe = try JSONDecoder().decode(ArchitectureProbe.self, from: configJSON)
        } catch {
            throw Self.configError(error, path: path)
        }
        let name = probe.architectures?.first.map(Self.architectureName) ?? probe.modelType.flatMap(Self.architectureForModelType) ?? "unknown"
        guard let architecture = Architecture(rawValue: name) else {
            throw CheckpointError.unsupportedArchitecture(
                path: path, architecture: name, supported: Architecture.allCases.map(\.rawValue))
        }
        do {
            guard let definition = Self.definition(for: architecture) else {
                throw CheckpointError.unsupportedArchitecture(path: path, architecture: name, supported: Architecture.allCases.map(\.rawValue))
            }
            self = try definition.describe(configJSON: configJSON)
            weightQuantization = try JSONDecoder().decode(QuantizationProbe.self, from: configJSON)
                .quantization(familyMethods: definition.quantizationMethods)
        } catch let error as CheckpointError {
            throw error
        } catch let error as ConfigurationError {
            throw CheckpointError.badConfig(path: path, field: error.field, reason: error.reason)
        } catch {
            throw Self.configError(error, path: path)
        }
        if let generationConfigJSON,
           let generation = try? JSONDecoder().decode(GenerationConfiguration.self, from: generationConfigJSON) {
            for id in generation.eosTokenID?.values ?? [] where !eosTokenIDs.contains(id) {
                eosTokenIDs.append(id)
            }
            if bosTokenID == nil { bosTokenID = generation.bosTokenID }
        }
        try validate(path: path)
    }

    func validate(path: String) throws {
        func require(_ condition: Bool, _ field: String, _ reason: String) throws {
            if !condition { throw CheckpointError.badConfig(path: path, field: field, reason: reason) }
        }
        try require(vocabularySize > 0, "vocab_size", "must be positive")
        try require(hiddenSize > 0, "hidden_size", "must be positive")
        try require(!layers.isEmpty, "num_hidden_layers", "must be positive")
        try require(attention.heads > 0 && attention.keyValueHeads > 0, "num_attention_heads", "must be positive")
        try require(attention.heads % attention.keyValueHeads == 0, "num_key_value_heads",
                    "\(attention.keyValueHeads) does not divide num_attention_heads \(attention.heads)")
        try require(attention.headDimension > 0 && attention.headDimension % 2 == 0, "head_dim", "must be a positive even number")
        if let latent = latentAttention {
            try require(latent.keyValueLoraRank > 0, "kv_lora_rank", "must be positive")
            try require(latent.queryLoraRank.map { $0 > 0 } ?? true, "q_lora_rank", "must be positive or null")
            try require(latent.nopeDimension > 0, "qk_nope_head_dim", "must be positive")
            try require(latent.ropeDimension > 0 && latent.ropeDimension % 2 == 0, "qk_rope_head_dim", "must be a positive even number")
            try require(latent.valueDimension > 0, "v_head_dim", "must be positive")
            if let indexer = latent.indexer {
                try require(latent.queryLoraRank != nil, "q_lora_rank", "is needed by the sparse-attention indexer")
                try require(indexer.heads > 0, "index_n_heads", "must be positive")
                try require(indexer.headDimension >= indexer.ropeDimension, "index_head_dim",
                            "\(indexer.headDimension) is smaller than qk_rope_head_dim \(indexer.ropeDimension)")
                try require(indexer.topK > 0, "index_topk", "must be positive")
                try require(!indexer.sharedLayers.contains(0), "indexer_types",
                            "layer 0 is \"shared\", but a shared layer reuses the selection of an earlier indexer layer")
                try require(indexer.sharedLayers.allSatisfy { $0 < layers.count }, "indexer_types",
                            "names more layers than num_hidden_layers \(layers.count)")
            }
        }
        if let section = attention.mropeSection {
            try require(section.count == 3 && section.reduce(0, +) == attention.rotaryDimension / 2, "rope_parameters.mrope_section",
                        "\(section) must be three numbers summing to head_dim / 2 (\(attention.rotaryDimension / 2))")
        }
        if let v = vision {
            try require(v.depth > 0 && v.hiddenSize > 0 && v.heads > 0 && v.hiddenSize % v.heads == 0, "vision_config",
                        "depth, hidden_size and num_heads must be positive, num_heads dividing hidden_size")
            try require(v.headDimension % 4 == 0, "vision_config.num_heads", "head dimension \(v.headDimension) must be a multiple of 4")
            try require(v.outHiddenSize == hiddenSize, "vision_config.out_hidden_size",
                        "\(v.outHiddenSize) differs from the text hidden_size \(hiddenSize)")
            try require(v.positionGridSide * v.positionGridSide == v.positionEmbeddings, "vision_config.num_position_embeddings",
                        "\(v.positionEmbeddings) is not a square")
            try require(v.deepstackIndexes.allSatisfy { (0..<v.depth).contains($0) } && v.deepstackIndexes.count <= layers.count,
                        "vision_config.deepstack_visual_indexes", "\(v.deepstackIndexes) must name vision blocks, at most one per text layer")
            try require(["gelu_pytorch_tanh", "gelu"].contains(v.activation), "vision_config.hidden_act",
                        "'\(v.activation)' is not supported (gelu_pytorch_tanh, gelu)")
        }
        if case .yarn(let yarn) = attention.ropeScaling {
            try require(yarn.factor > 0, "rope_parameters.factor", "must be positive")
            try require(yarn.originalMaxPositions > 0, "rope_parameters.original_max_position_embeddings", "must be positive")
        }
        if let q = weightQuantization {
            try require(q.blockRows > 0 && q.blockColumns > 0, "quantization_config.weight_block_size", "must be positive")
        }
        try require(attention.rotaryDimension % 2 == 0 && attention.rotaryDimension <= attention.headDimension,
                    "partial_rotary_factor", "gives rotary dimension \(attention.rotaryDimension) for head_dim \(attention.headDimension)")
        if !sparseLayers.isEmpty {
            try require(router.expertCount > 0, "num_experts", "must be positive for a model with MoE layers")
            try require(router.expertsPerToken >= 1 && router.expertsPerToken <= router.expertCount, "num_experts_per_tok",
                        "\(router.expertsPerToken) is not in 1…\(router.expertCount)")
            try require(router.groupCount >= 1 && router.expertCount % router.groupCount == 0, "n_group",
                        "\(router.groupCount) does not divide the \(router.expertCount) experts")
            try require(router.groupsPerToken >= 1 && router.groupsPerToken <= router.groupCount, "topk_group",
                        "\(router.groupsPerToken) is not in 1…n_group (\(router.groupCount))")
            try require(moeIntermediateSize > 0, "moe_intermediate_size", "must be positive")
        }
    }

}

extension ModelDescription {
    /// The rotary embedding `attention` describes (rotating `rotaryDimension` features at
    /// the start of each `headDimension`-wide head).
    public func makeRotaryEmbedding() -> RotaryEmbedding {
        let a = attention
        switch a.ropeScaling {
        case .none:
            return RotaryEmbedding(headDimension: a.headDimension, rotaryDimension: a.rotaryDimension, base: a.ropeTheta,
                                   interleaved: a.interleavedRotary, frequencyAxes: a.mropeSection.map(Self.mropeAxes))
        case .yarn(let y):
            return RotaryEmbedding(
                headDimension: a.headDimension, rotaryDimension: a.rotaryDimension, base: a.ropeTheta, yarnFactor: y.factor,
                originalMaxPositions: y.originalMaxPositions, betaFast: y.betaFast, betaSlow: y.betaSlow,
                attentionFactor: y.attentionFactor, truncate: y.truncate, interleaved: a.interleavedRotary)
        }
    }
}

extension ModelDescription {
    /// Interleaved M-RoPE (`Qwen3VLMoeTextRotaryEmbedding.recomposition_frequencies`):
    /// frequency i follows height when i % 3 == 1 and i < 3·section[1], width when
    /// i % 3 == 2 and i < 3·section[2], and the temporal/text position otherwise.
    static func mropeAxes(_ section: [Int]) -> [Int] {
        let half = section.reduce(0, +)
        return (0..<half).map { i in
            if i % 3 == 1 && i < 3 * section[1] { return 1 }
            if i % 3 == 2 && i < 3 * section[2] { return 2 }
            return 0
        }
    }
}

extension DecodingError.Context {
    var fieldPath: String { codingPath.map(\.stringValue).joined(separator: ".") }
}

/// A config value that is not usable, found after decoding.
struct ConfigurationError: Error {
    let field: String
    let reason: String
}

private struct ArchitectureProbe: Decodable {
    let architectures: [String]?
    let modelType: String?
    enum CodingKeys: String, CodingKey {
        case architectures
        case modelType = "model_type"
    }
}

/// `eos_token_id` and friends: an integer, a list of integers, or null.
struct TokenIDList: Decodable, Sendable {
    let values: [Int]
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            values = []
        } else if let one = try? container.decode(Int.self) {
            values = [one]
        } else {
            values = try container.decode([Int].self)
        }
    }
}

extension KeyedDecodingContainer {
    /// `bos_token_id`: the configuration class's `default` when the key is absent, nil when
    /// it is null (as a transformers config reads it).
    func specialToken(_ key: Key, default fallback: Int?) throws -> Int? {
        contains(key) ? try decodeIfPresent(Int.self, forKey: key) : fallback
    }

    /// `eos_token_id` (one id or a list): `default` when absent, none when null.
    func specialTokens(_ key: Key, default fallback: [Int]) throws -> [Int] {
        contains(key) ? try decodeIfPresent(TokenIDList.self, forKey: key)?.values ?? [] : fallback
    }
}

/// The fields Jindou reads from generation_config.json.
struct GenerationConfiguration: Decodable {
    let eosTokenID: TokenIDList?
    let bosTokenID: Int?
    enum CodingKeys: String, CodingKey {
        case eosTokenID = "eos_token_id"
        case bosTokenID = "bos_token_id"
    }
}

/// RoPE settings in either config style: transformers 5 writes `rope_parameters:
/// {rope_theta, rope_type, partial_rotary_factor, …}`; Hub checkpoints written by 4.x have
/// top-level `rope_theta`, `partial_rotary_factor` and `rope_scaling: {type, factor, …}`.
struct RopeSettings {
    var theta: Double
    var partialRotaryFactor: Double
    var type: String
    /// YaRN keys as written (resolved against max_position_embeddings by `scaling`).
    var factor: Double?
    var originalMaxPositions: Int?
    var betaFast: Double?
    var betaSlow: Double?
    var mscale: Double?
    var mscaleAllDim: Double?
    var attentionFactor: Double?
    var truncate: Bool?
    /// Qwen-VL's M-RoPE sections [t, h, w] (frequencies per axis; sum = head_dim / 2).
    var mropeSection: [Int]?
    /// NTK-alpha (`alpha` with `type: dynamic`, Hunyuan): a fixed stretch of the base.
    var alpha: Double?

    static let supportedTypes = ["default", "yarn"]

    /// `familyTypes`: further rope types the calling family resolves itself (Hunyuan's NTK-alpha `dynamic`).
    static func decode<K: CodingKey>(
        from container: KeyedDecodingContainer<K>, parameters: K, theta: K, partialFactor: K, scaling: K,
        defaultTheta: Double, defaultPartialFactor: Double, familyTypes: [String] = []
    ) throws -> RopeSettings {
        var settings = RopeSettings(theta: defaultTheta, partialRotaryFactor: defaultPartialFactor, type: "default")
        if let p = try container.decodeIfPresent(RopeParametersObject.self, forKey: parameters) {
            settings.merge(p)
        }
        if let t = try container.decodeIfPresent(Double.self, forKey: theta) { settings.theta = t }
        if let f = try container.decodeIfPresent(Double.self, forKey: partialFactor) { settings.partialRotaryFactor = f }
        if let s = try container.decodeIfPresent(RopeParametersObject.self, forKey: scaling) {
            settings.merge(s)
        }
        guard (Self.supportedTypes + familyTypes).contains(settings.type) else {
            throw ConfigurationError(field: "rope_parameters.rope_type",
                                     reason: "rope type '\(settings.type)' is not supported yet (supported: \((Self.supportedTypes + familyTypes).joined(separator: ", ")))")
        }
        return settings
    }

    private mutating func merge(_ p: RopeParametersObject) {
        theta = p.ropeTheta ?? theta
        partialRotaryFactor = p.partialRotaryFactor ?? partialRotaryFactor
        type = p.ropeType ?? p.type ?? type
        factor = p.factor ?? factor
        originalMaxPositions = p.originalMaxPositionEmbeddings ?? originalMaxPositions
        betaFast = p.betaFast ?? betaFast
        betaSlow = p.betaSlow ?? betaSlow
        mscale = p.mscale ?? mscale
        mscaleAllDim = p.mscaleAllDim ?? mscaleAllDim
        attentionFactor = p.attentionFactor ?? attentionFactor
        truncate = p.truncate ?? truncate
        mropeSection = p.mropeSection ?? mropeSection
        alpha = p.alpha ?? alpha
    }

    func rotaryDimension(headDimension: Int) -> Int {
        Int(Double(headDimension) * partialRotaryFactor)
    }

    /// The resolved scaling, as `_compute_yarn_parameters` resolves it.
    func scaling(maxPositionEmbeddings: Int) throws -> RopeScaling {
        guard type == "yarn" else { return .none }
        let original = originalMaxPositions ?? maxPositionEmbeddings
        let factor = factor ?? Double(maxPositionEmbeddings) / Double(max(1, original))
        let attention: Double
        if let attentionFactor {
            attention = attentionFactor
        } else if let mscale, let mscaleAllDim, mscale != 0, mscaleAllDim != 0 {
            attention = YarnScaling.mscale(factor, mscale) / YarnScaling.mscale(factor, mscaleAllDim)
        } else {
            attention = YarnScaling.mscale(factor)
        }
        return .yarn(YarnScaling(
            factor: factor, originalMaxPositions: original,
            betaFast: (betaFast ?? 0) != 0 ? betaFast! : 32, betaSlow: (betaSlow ?? 0) != 0 ? betaSlow! : 1,
            attentionFactor: attention, mscaleAllDim: mscaleAllDim, truncate: truncate ?? true))
    }
}

private struct RopeParametersObject: Decodable {
    let ropeTheta: Double?
    let ropeType: String?
    let type: String?
    let partialRotaryFactor: Double?
    let factor: Double?
    let originalMaxPositionEmbeddings: Int?
    let betaFast: Double?
    let betaSlow: Double?
    let mscale: Double?
    let mscaleAllDim: Double?
    let attentionFactor: Double?
    let truncate: Bool?
    let mropeSection: [Int]?
    let alpha: Double?
    enum CodingKeys: String, CodingKey {
        case alpha
        case ropeTheta = "rope_theta"
        case ropeType = "rope_type"
        case type
        case partialRotaryFactor = "partial_rotary_factor"
        case factor
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case betaFast = "beta_fast"
        case betaSlow = "beta_slow"
        case mscale
        case mscaleAllDim = "mscale_all_dim"
        case attentionFactor = "attention_factor"
        case truncate
        case mropeSection = "mrope_section"
    }
}

/// `quantization_config`, if any. Jindou reads DeepSeek-style block FP8 (which Qwen3 and
/// GLM FP8 releases also use); other methods are refused by name.
private struct QuantizationProbe: Decodable {
    let quantizationConfig: Settings?
    struct Settings: Decodable {
        let quantMethod: String?
        let fmt: String?
        let weightBlockSize: [Int]?
        enum CodingKeys: String, CodingKey {
            case quantMethod = "quant_method"
            case fmt
            case weightBlockSize = "weight_block_size"
        }
    }
    enum CodingKeys: String, CodingKey {
        case quantizationConfig = "quantization_config"
    }

    /// `familyMethods`: methods the family's own configuration handled (none of them is block FP8).
    func quantization(familyMethods: [String] = []) throws -> BlockQuantization? {
        guard let q = quantizationConfig else { return nil }
        if let method = q.quantMethod, familyMethods.contains(method) { return nil }
        guard q.quantMethod == "fp8" else {
            throw ConfigurationError(field: "quantization_config.quant_method",
                                     reason: "'\(q.quantMethod ?? "none")' is not supported (supported: fp8 with block scales)")
        }
        guard (q.fmt ?? "e4m3") == "e4m3" else {
            throw ConfigurationError(field: "quantization_config.fmt", reason: "'\(q.fmt!)' is not supported (supported: e4m3)")
        }
        guard let block = q.weightBlockSize, block.count == 2 else {
            throw ConfigurationError(field: "quantization_config.weight_block_size",
                                     reason: "must be [rows, columns] (per-tensor FP8 is not supported)")
        }
        return BlockQuantization(blockRows: block[0], blockColumns: block[1])
    }
}
