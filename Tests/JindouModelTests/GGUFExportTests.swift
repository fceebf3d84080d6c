import Foundation
import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// `jindouctl quantize`: a small all-MoE Qwen3 checkpoint written as GGUF and read back.
@Suite("GGUF export")
struct GGUFExportTests {
    static let shape = SyntheticModelShape(name: "qwen3-moe-small", configJSON: """
        {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "vocab_size": 512, "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 256,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "num_experts": 4,
        "num_experts_per_tok": 2, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "rms_norm_eps": 1e-6, "max_position_embeddings": 4096, "tie_word_embeddings": false,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "eos_token_id": 1}
        """)

    @Test(arguments: BlockFormat.allCases)
    func writesWhatLlamaCppReads(format: BlockFormat) async throws {
        let directory = NSTemporaryDirectory() + "jindou-gguf-export-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try SyntheticCheckpoint.write(shape: Self.shape, layers: 2, dtype: .bfloat16, directory: directory)
        let out = directory + "/model.gguf"
        let ctl = try Executable("jindouctl")
        let run = try ctl.run(["quantize", "--to", format.rawValue, "--model", directory, "--out", out])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"))

        let file = try GGUFFile(path: out)
        #expect(file.metadata["general.architecture"]?.string == "qwen3moe")
        #expect(file.metadata["qwen3moe.expert_count"]?.integer == 4 && file.metadata["qwen3moe.expert_used_count"]?.integer == 2)
        #expect(file.metadata["qwen3moe.attention.key_length"]?.integer == 64 && file.metadata["qwen3moe.block_count"]?.integer == 2)
        #expect(file.metadata["qwen3moe.vocab_size"]?.integer == 512 && file.metadata["tokenizer.ggml.model"]?.string == "none")
        // llama.cpp's qwen3moe tensor set, nothing else.
        var expected = ["token_embd.weight", "output_norm.weight", "output.weight"]
        for l in 0..<2 {
            expected += ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm", "ffn_norm",
                         "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"].map { "blk.\(l).\($0).weight" }
        }
        #expect(Set(file.tensors.map(\.name)) == Set(expected))
        #expect(file.tensor("blk.1.ffn_down_exps.weight")?.dimensions == [256, 256, 4])
        #expect(file.tensor("blk.0.attn_q.weight")?.dimensions == [256, 256])
        #expect(file.tensor("blk.0.ffn_gate_inp.weight")?.type == .f32)

        // Experts equal the engine's own re-encoding; other matrices are Q8_0 of the checkpoint.
        let engine = try InferenceEngine.load(directory: directory, expertFormat: format, denseFormat: .q8_0)
        // `--dense-format q8_0` encodes the coordinator's matrices to the GGUF's bytes too.
        guard case .grouped(let attention) = engine.model.layers[1].attention else { Issue.record("not grouped attention"); return }
        #expect(attention.query.blockFormat == .q8_0 && engine.model.lmHead.blockFormat == .q8_0)
        #expect(try file.matrix("blk.1.attn_q.weight").floatValues() == attention.query.floatValues())
        #expect(try file.matrix("output.weight").floatValues() == engine.model.lmHead.floatValues())
        let shard = try #require(engine.experts as? ExpertShard)
        for l in 0..<2 {
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

    @Test func refusesWhatItCannotWrite() throws {
        let ctl = try Executable("jindouctl")
        let glm = try ctl.run(["quantize", "--to", "q8_0", "--model", Fixtures.path("glm4-moe-tiny"), "--out", NSTemporaryDirectory() + "y.gguf"])
        #expect(glm.status != 0 && glm.stderr.contains("Qwen3MoeForCausalLM"))
        let bad = try ctl.run(["quantize", "--to", "q5_k", "--model", Fixtures.path("glm4-moe-tiny"), "--out", NSTemporaryDirectory() + "z.gguf"])
        #expect(bad.status != 0 && bad.stderr.contains("--to"))
    }
}
