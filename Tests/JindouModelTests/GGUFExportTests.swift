import Foundation
import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// `jindouctl quantize`: small Qwen3-MoE and GLM4-MoE checkpoints written as GGUF and read back.
@Suite("GGUF export")
struct GGUFExportTests {
    static let qwen3Moe = SyntheticModelShape(name: "qwen3-moe-small", configJSON: """
        {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "vocab_size": 512, "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 256,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "num_experts": 4,
        "num_experts_per_tok": 2, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "rms_norm_eps": 1e-6, "max_position_embeddings": 4096, "tie_word_embeddings": false,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "eos_token_id": 1}
        """)

    /// GLM-4.5-Air's features at a small size: a leading dense layer, a shared expert, two
    /// expert groups, routed scaling, q/k norms, attention biases, partial rotary.
    static let glm4Moe = SyntheticModelShape(name: "glm4-moe-small", configJSON: """
        {"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe",
        "vocab_size": 512, "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 256,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "n_routed_experts": 4,
        "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 2, "topk_group": 1,
        "routed_scaling_factor": 2.5, "norm_topk_prob": true, "use_qk_norm": true, "attention_bias": true,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "tie_word_embeddings": false,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "partial_rotary_factor": 0.5},
        "eos_token_id": [1, 2]}
        """)

    /// Per architecture: the shape, and llama.cpp's tensor set for its two layers
    /// (gguf-py/gguf/constants.py MODEL_TENSORS) and metadata beyond the shared keys.
    static let architectures: [String: (shape: SyntheticModelShape, tensors: [String], metadata: [String: GGUFValue])] = [
        "qwen3moe": (qwen3Moe, (0..<2).flatMap { l in
            ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm", "ffn_norm",
             "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"].map { "blk.\(l).\($0).weight" }
        }, [:]),
        "glm4moe": (glm4Moe, (0..<2).flatMap { l in
            ["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_q.bias", "attn_k.bias",
             "attn_v.bias", "attn_q_norm.weight", "attn_k_norm.weight", "post_attention_norm.weight"].map { "blk.\(l).\($0)" }
        } + ["ffn_gate", "ffn_up", "ffn_down"].map { "blk.0.\($0).weight" }
          + ["ffn_gate_inp.weight", "exp_probs_b.bias", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight",
             "ffn_gate_shexp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight"].map { "blk.1.\($0)" },
        ["glm4moe.leading_dense_block_count": .uint(1), "glm4moe.expert_shared_count": .uint(1), "glm4moe.expert_gating_func": .uint(2),
         "glm4moe.expert_weights_scale": .float(2.5), "glm4moe.expert_weights_norm": .bool(true), "glm4moe.expert_group_count": .uint(2),
         "glm4moe.expert_group_used_count": .uint(1), "glm4moe.rope.dimension_count": .uint(32), "glm4moe.feed_forward_length": .uint(512)]),
    ]

    @Test(arguments: ["qwen3moe", "glm4moe"], [BlockFormat.q8_0, .q4_K])
    func writesWhatLlamaCppReads(architecture: String, format: BlockFormat) async throws {
        let (shape, layerTensors, metadata) = try #require(Self.architectures[architecture])
        let directory = Scratch.directory + "jindou-gguf-export-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try SyntheticCheckpoint.write(shape: shape, layers: 2, dtype: .bfloat16, directory: directory)
        let out = directory + "/model.gguf"
        let ctl = try Executable("jindouctl")
        let run = try ctl.run(["quantize", "--experts", format.rawValue, "--model", directory, "--out", out])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"))

        let file = try GGUFFile(path: out)
        let a = architecture
        #expect(file.metadata["general.architecture"]?.string == a)
        #expect(file.metadata["\(a).expert_count"]?.integer == 4 && file.metadata["\(a).expert_used_count"]?.integer == 2)
        #expect(file.metadata["\(a).attention.key_length"]?.integer == 64 && file.metadata["\(a).block_count"]?.integer == 2)
        #expect(file.metadata["\(a).vocab_size"]?.integer == 512 && file.metadata["tokenizer.ggml.model"]?.string == "none")
        for (key, value) in metadata { #expect(file.metadata[key] == value, "\(key)") }
        // llama.cpp's tensor set, nothing else.
        #expect(Set(file.tensors.map(\.name)) == Set(["token_embd.weight", "output_norm.weight", "output.weight"] + layerTensors))
        #expect(file.tensor("blk.1.ffn_down_exps.weight")?.dimensions == [256, 256, 4])
        #expect(file.tensor("blk.0.attn_q.weight")?.dimensions == [256, 256])
        #expect(file.tensor("blk.1.ffn_gate_inp.weight")?.type == .f32)

        // Experts equal the engine's own re-encoding; other matrices are Q8_0 of the checkpoint.
        let engine = try InferenceEngine.load(directory: directory, expertFormat: format, denseFormat: .q8_0)
        // `--dense-format q8_0` encodes the coordinator's matrices to the GGUF's bytes too.
        guard case .grouped(let attention) = engine.model.layers[1].attention else { Issue.record("not grouped attention"); return }
        #expect(attention.query.blockFormat == .q8_0 && engine.model.lmHead.blockFormat == .q8_0)
        #expect(try file.matrix("blk.1.attn_q.weight").floatValues() == attention.query.floatValues())
        #expect(try file.matrix("output.weight").floatValues() == engine.model.lmHead.floatValues())
        let shard = try #require(engine.experts as? ExpertShard)
        for l in engine.description.sparseLayers {
            for e in 0..<4 {
                let weights = try #require(shard.experts[ExpertKey(layer: l, expert: e)])
                #expect(try file.matrix("blk.\(l).ffn_gate_exps.weight", slice: e).floatValues() == weights.gate.floatValues())
                #expect(try file.matrix("blk.\(l).ffn_up_exps.weight", slice: e).floatValues() == weights.up.floatValues())
                #expect(try file.matrix("blk.\(l).ffn_down_exps.weight", slice: e).floatValues() == weights.down.floatValues())
            }
        }
        let checkpoint = try Checkpoint(directory: directory)
        let tensors = try checkpoint.load([TensorRequest("model.layers.1.self_attn.o_proj.weight", shape: nil),
                                           TensorRequest("model.layers.1.mlp.gate.weight", shape: nil)])
        let o = try tensors.matrix("model.layers.1.self_attn.o_proj.weight", quantization: nil)
        #expect(try file.matrix("blk.1.attn_output.weight").floatValues() == o.quantized(.q8_0).floatValues())
        let router = try tensors.matrix("model.layers.1.mlp.gate.weight", quantization: nil)
        #expect(try file.matrix("blk.1.ffn_gate_inp.weight").floatValues() == router.floatValues())
    }

    /// The converter's own file for the same checkpoint is the reference: the same keys and
    /// values, less what names the conversion (file type, name, size label) and the MTP layer
    /// the converter keeps and Jindou does not write (`nextn_predict_layers`, one more
    /// block); the same tensor names and dimensions.
    @Test("jindouctl quantize writes the converter's metadata and tensors", arguments: ["glm4-moe-tiny", "glm4-moe-tiny-legacy"])
    func writesTheConvertersMetadataAndTensors(fixture: String) throws {
        let (directory, out) = try GGUFLoadingTests.quantize(fixture)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ours = try GGUFFile(path: out), theirs = try GGUFFile(path: GGUFLoadingTests.llamaCppFile(fixture))
        let a = try #require(theirs.metadata["general.architecture"]?.string)
        let naming: Set = ["general.type", "general.name", "general.size_label", "general.file_type"]
        let theirKeys = Set(theirs.metadataKeys).subtracting(naming).subtracting(["\(a).nextn_predict_layers"])
        // vocab_size: written for files without a tokenizer (llama-bench runs them).
        let ourKeys = Set(ours.metadataKeys).subtracting(naming).subtracting(["\(a).vocab_size"])
        #expect(ourKeys == theirKeys, "ours only: \(ourKeys.subtracting(theirKeys)), theirs only: \(theirKeys.subtracting(ourKeys))")
        for key in ourKeys.intersection(theirKeys) where key != "\(a).block_count" {
            #expect(ours.metadata[key] == theirs.metadata[key], "\(key)")
        }
        let prediction = try #require(theirs.metadata["\(a).nextn_predict_layers"]?.integer)
        #expect(ours.metadata["\(a).block_count"]?.integer == theirs.metadata["\(a).block_count"]!.integer! - prediction)
        #expect(Set(ours.tensors.map(\.name)) == Set(theirs.tensors.map(\.name)))
        for tensor in ours.tensors { #expect(tensor.dimensions == theirs.tensor(tensor.name)?.dimensions, "\(tensor.name)") }
    }

    @Test func refusesWhatItCannotWrite() throws {
        let ctl = try Executable("jindouctl")
        let vl = try ctl.run(["quantize", "--to", "Q8_0", "--model", Fixtures.path("qwen3-vl-moe-tiny"), "--out", Scratch.directory + "y.gguf"])
        #expect(vl.status != 0 && vl.stderr.contains("GGUF export supports Qwen3MoeForCausalLM, Glm4MoeForCausalLM, DeepseekV3ForCausalLM so far, not Qwen3VLMoeForConditionalGeneration"),
                "\(vl.stderr)")
        let bad = try ctl.run(["quantize", "--to", "q9_k", "--model", Fixtures.path("glm4-moe-tiny"), "--out", Scratch.directory + "z.gguf"])
        #expect(bad.status != 0 && bad.stderr.contains("--to must be one of"), "\(bad.stderr)")
        let both = try ctl.run(["quantize", "--to", "Q8_0", "--experts", "q8_0", "--model", Fixtures.path("glm4-moe-tiny"), "--out", Scratch.directory + "z.gguf"])
        #expect(both.status != 0 && both.stderr.contains("exactly one of --to MIX or --experts FORMAT"), "\(both.stderr)")
        // An importance matrix that is not one, or is another model's.
        let model = Fixtures.path("qwen3-moe-w256"), out = Scratch.directory + "jindou-imatrix-\(UUID().uuidString).gguf"
        let notOne = try ctl.run(["quantize", "--to", "IQ4_XS", "--imatrix", Fixtures.path("gguf-mixes/qwen3-moe-w256-Q8_0.gguf"),
                                  "--model", model, "--out", out])
        #expect(notOne.status != 0 && notOne.stderr.contains("not an importance matrix"), "\(notOne.stderr)")
        let foreign = try ctl.run(["quantize", "--to", "IQ4_XS", "--imatrix", Fixtures.path("gguf-mixes/deepseek-v3-mixed.imatrix.gguf"),
                                   "--model", model, "--out", out])
        #expect(foreign.status != 0 && foreign.stderr.contains("does not fit rows of"), "\(foreign.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".partial"))
    }
}
