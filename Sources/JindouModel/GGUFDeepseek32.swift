import Foundation

// llama.cpp's `deepseek32` (DeepSeek-V3.2) and `glm-dsa` (GLM-5) architectures: the deepseek2
// reading (GGUFDeepseek2.swift: MLA, YaRN, the grouped sigmoid router) plus DeepSeek Sparse
// Attention's indexer, following the converter (conversion/deepseek.py `DeepseekV32Model`,
// conversion/glm.py `GlmMoeDsaModel`) and graphs (src/models/deepseek32.cpp, glm-dsa.cpp):
//
// Metadata: `attention.indexer.head_count`, `.key_length`, `.top_k`; glm-dsa also
// `attention.indexer.types`, one bool per decoder layer (true: the layer runs its indexer;
// false: "shared", it reuses the previous layer's selection). Tensors per layer with an indexer:
// `indexer.attn_q_b` (wq_b), `indexer.attn_k` (wk), `indexer.k_norm` weight and bias,
// `indexer.proj` (weights_proj).
// Indexer rotary: deepseek32 rotates with LLAMA_ROPE_TYPE_NEOX (half-split pairs, as
// transformers' DeepseekV32Indexer does), glm-dsa with LLAMA_ROPE_TYPE_NORM (adjacent pairs, as
// GlmMoeDsaIndexer does); MLA itself is adjacent pairs in both. llama.cpp also multiplies the
// indexer's q and k by a Hadamard matrix before scoring — orthogonal, so the scores are the same
// up to rounding; Jindou scores q·k directly, as transformers does.

extension GGUFTensorNames {
    /// The indexer's tensors (gguf-py tensor_mapping.py, "DSA").
    static let indexerLayerSuffixes: [String: String] = [
        "self_attn.indexer.wq_b.weight": "indexer.attn_q_b.weight",
        "self_attn.indexer.wk.weight": "indexer.attn_k.weight",
        "self_attn.indexer.k_norm.weight": "indexer.k_norm.weight",
        "self_attn.indexer.k_norm.bias": "indexer.k_norm.bias",
        "self_attn.indexer.weights_proj.weight": "indexer.proj.weight",
    ]
}

extension GGUFModelMetadata {
    /// `deepseek32` / `glm-dsa`: DeepSeek-V3.2 / GLM-5 as llama.cpp's converter writes them.
    func sparseAttentionDeepseek() throws -> ModelDescription {
        var description = try deepseek2()
        let glm = architecture == "glm-dsa"
        description.architecture = glm ? .glmMoeDsa : .deepseekV32
        guard let rope = description.latentAttention?.ropeDimension, description.latentAttention?.queryLoraRank != nil else {
            throw error(arch("attention.q_lora_rank"), "is missing; the sparse-attention indexer starts from the q-LoRA latent")
        }
        var indexer = SparseIndexerShape(
            heads: try positive(arch("attention.indexer.head_count")), headDimension: try positive(arch("attention.indexer.key_length")),
            topK: try positive(arch("attention.indexer.top_k")), ropeDimension: rope)
        indexer.interleavedRotary = glm
        if let types = value(arch("attention.indexer.types")) {
            guard glm else { throw error(arch("attention.indexer.types"), "is not read by llama.cpp's \(architecture)") }
            guard let list = types.array, list.count == description.layerCount else {
                throw error(arch("attention.indexer.types"), "must be a list of one bool per decoder layer (\(description.layerCount))")
            }
            var shared: Set<Int> = []
            for (layer, entry) in list.enumerated() {
                guard case .bool(let full) = entry else { throw error(arch("attention.indexer.types"), "entry \(layer) is not a bool") }
                if !full { shared.insert(layer) }
            }
            guard !shared.contains(0) else {
                throw error(arch("attention.indexer.types"), "marks layer 0 shared, but a shared layer reuses an earlier layer's selection")
            }
            indexer.sharedLayers = shared
        }
        description.latentAttention?.indexer = indexer
        return try validated(description)
    }
}
