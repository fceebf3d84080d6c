import ArgumentParser
import Foundation
import JindouModel
import JindouPlacement

/// `jindouctl wire-case`: dispatches and their expected combines for another implementation
/// of the wire protocol to check against a live worker (tools/probe).
struct WireCaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire-case",
        abstract: "Write dispatches and the combines Jindou computes for them, for the C wire probe.",
        discussion: """
            One dispatch per MoE layer (up to --layers) of random hidden states routed to random experts; the
            expected combine comes from Jindou's expert code on the same weights. The worker must hold the experts
            the case routes to (--experts, default all).
              jindouctl wire-case --model DIR --out /tmp/case.txt
              tools/probe/build.sh && .build/jindou-probe --connect 127.0.0.1:7070 --case /tmp/case.txt --token-file T
            """
    )

    @Option(help: "Checkpoint directory or GGUF file (the worker's --model).")
    var model: String

    @Option(help: "Output file.")
    var out: String

    @Option(help: "Tokens per dispatch.")
    var tokens: Int = 3

    @Option(help: "MoE layers to dispatch to (the first N).")
    var layers: Int = 4

    @Option(help: "Experts to route to, e.g. 0-31,40 (default: all routed experts).")
    var experts: String?

    @Option(name: .customLong("experts-per-token"), help: "Experts per token (default: the model's).")
    var expertsPerToken: Int?

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    func validate() throws {
        guard tokens > 0, layers > 0 else { throw ValidationError("--tokens and --layers must be positive") }
        if let expertsPerToken, expertsPerToken < 1 { throw ValidationError("--experts-per-token must be at least 1") }
    }

    func run() throws {
        let source = try openWeightSource(model)
        let pool = try experts.map { try parseExpertRanges($0, limit: source.modelDescription().expertCount) }
        let wireCase = try WireCase(source: source, tokens: tokens, layerLimit: layers, experts: pool,
                                    expertsPerToken: expertsPerToken, seed: seed)
        try Data(wireCase.text.utf8).write(to: URL(fileURLWithPath: out))
        print("wrote \(out): \(wireCase.dispatches.count) dispatches of \(tokens) tokens (layers \(wireCase.dispatches.map { String($0.layer) }.joined(separator: ",")))")
    }
}
