import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import Testing

/// `--micro-batches 2` on a real cluster: concurrent requests run as two overlapping
/// micro-batches per step, and every request's greedy output is still the single-process
/// engine's (also together with speculative decoding).
@Suite("Micro-batched steps through a cluster", .serialized)
struct MicroBatchServingTests {
    static let prompts = [[5, 6, 7, 8, 9, 5, 6, 7], [11, 12, 11, 12, 11, 12], [40, 41, 42, 43], [3], [17, 18, 19, 20, 21], [30, 31]]

    @Test(arguments: [(1, false), (3, false), (3, true)])
    func outputIsTheEnginesOutput(workers: Int, speculative: Bool) async throws {
        let fixture = "qwen3-moe-tiny"
        let engine = try await EngineCache.shared.engine(fixture)
        let cluster = try LocalCluster(fixture: fixture, workers: workers,
                                       extraArguments: ["--micro-batches", "2"] + (speculative ? ["--speculative", "ngram"] : []))
        defer { cluster.stop() }
        let client = try cluster.client
        let reports = try await withThrowingTaskGroup(of: (Int, GenerationReport).self) { group in
            for (i, prompt) in Self.prompts.enumerated() {
                group.addTask {
                    (i, try await client.post("v1/jindou/generate",
                                              GenerationRequestBody(promptIDs: prompt, maxNewTokens: 20, ignoreEOS: true),
                                              as: GenerationReport.self))
                }
            }
            var all: [Int: GenerationReport] = [:]
            for try await (i, report) in group { all[i] = report }
            return all
        }
        for (i, prompt) in Self.prompts.enumerated() {
            let expected = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 20, stopTokenIDs: []))
            #expect(reports[i]?.tokenIDs == expected.tokenIDs, "prompt \(i)")
        }
        // The steps really were split.
        let metrics = String(decoding: try await client.send("GET", "metrics", body: nil), as: UTF8.self)
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("jindou_micro_batched_steps_total") }
        #expect((line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0) > 0, "\(line ?? "no jindou_micro_batched_steps_total")")
    }
}
