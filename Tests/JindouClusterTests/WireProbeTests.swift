import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// The C implementation of the wire protocol (tools/probe, libprotobuf-c) against a real
/// worker: proves proto/ is a language-neutral contract. The probe needs a C compiler,
/// libprotobuf-c and libcrypto; CI installs them and sets JINDOU_REQUIRE_PROBE=1, so there
/// the suite cannot be skipped.
let probeToolchain: Bool = {
    if ProcessInfo.processInfo.environment["JINDOU_REQUIRE_PROBE"] == "1" { return true }
    let pkgConfig = Process()
    pkgConfig.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    pkgConfig.arguments = ["pkg-config", "--exists", "libprotobuf-c", "libcrypto"]
    pkgConfig.standardOutput = FileHandle.nullDevice
    pkgConfig.standardError = FileHandle.nullDevice
    guard (try? pkgConfig.run()) != nil else { return false }
    pkgConfig.waitUntilExit()
    return pkgConfig.terminationStatus == 0
}()

/// Built once per test process with tools/probe/build.sh into a temporary directory.
private let builtProbe: Result<Executable, HarnessError> = {
    let output = Scratch.url.appendingPathComponent("jindou-probe-\(getpid())")
    let build = Executable(url: URL(fileURLWithPath: Fixtures.repositoryRoot + "/tools/probe/build.sh"))
    do {
        let result = try build.run([output.path])
        guard result.status == 0 else { return .failure(HarnessError("tools/probe/build.sh failed:\n\(result.stderr)")) }
        return .success(Executable(url: output))
    } catch {
        return .failure(HarnessError("cannot run tools/probe/build.sh: \(error)"))
    }
}()

@Suite("C wire probe against a real worker", .serialized, .enabled(if: probeToolchain, "needs cc, libprotobuf-c-dev and libssl-dev"))
struct WireProbeTests {
    struct Report: Decodable {
        struct Timing: Decodable { let count: Int?; let min: Double; let p50: Double; let p99: Double }
        struct Dispatch: Decodable { let layer: Int; let tokens: Int; let pairs: Int; let round_trip_us: Timing }
        let worker: String
        let experts: Int
        let authenticated: Bool
        let checks_failed: Int
        let max_difference: Double
        let ping_us: Timing
        let dispatches: [Dispatch]
    }

    let directory: URL = {
        let url = Scratch.url.appendingPathComponent("jindou-probe-test-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    func secretFile(_ token: String, name: String = "token") throws -> String {
        let path = directory.appendingPathComponent(name).path
        try Data((token + "\n").utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        return path
    }

    /// `jindouctl wire-case` for the fixture: the dispatches and the combines Jindou computes.
    func writeCase(_ fixture: String, arguments: [String] = []) throws -> String {
        let path = directory.appendingPathComponent("case.txt").path
        let result = try Executable("jindouctl").run(["wire-case", "--model", Fixtures.path(fixture), "--out", path] + arguments)
        guard result.status == 0 else { throw HarnessError("jindouctl wire-case failed: \(result.stderr)") }
        return path
    }

    func probe(_ worker: WorkerProcess, casePath: String, tokenFile: String?, extra: [String] = []) throws -> Executable.Output {
        let probe = try builtProbe.get()
        return try probe.run(["--connect", "\(worker.endpoint.host):\(worker.endpoint.port)", "--case", casePath,
                              "--pings", "50", "--repeat", "10", "--timeout", "20"]
                             + (tokenFile.map { ["--token-file", $0] } ?? []) + extra)
    }

    @Test(arguments: ["qwen3-moe-tiny", "deepseek-v3-tiny", "gguf/gpt-oss-tiny-mxfp4.gguf"])
    func probeGetsJindousCombineFromARealWorker(fixture: String) throws {
        let token = try secretFile("probe-test-secret-\(UUID().uuidString)")
        let worker = try WorkerProcess(fixture: fixture, name: "probed", extraArguments: ["--token-file", token])
        defer { worker.stop() }
        let casePath = try writeCase(fixture)
        let result = try probe(worker, casePath: casePath, tokenFile: token, extra: ["--json"])
        #expect(result.status == 0, "probe failed: \(result.stderr)")
        let report = try JSONDecoder().decode(Report.self, from: result.stdout)
        let expectedCase = try WireCase(source: openWeightSource(Fixtures.path(fixture)))
        #expect(report.worker == "probed" && report.authenticated && report.checks_failed == 0)
        let description = try openWeightSource(Fixtures.path(fixture)).modelDescription()
        #expect(report.experts == description.sparseLayers.count * description.expertCount)  // WELCOME's list, every expert
        #expect(report.max_difference <= 1e-5)
        #expect(report.dispatches.map(\.layer) == expectedCase.dispatches.map(\.layer))
        #expect(report.ping_us.count == 50 && report.ping_us.min > 0 && report.ping_us.min <= report.ping_us.p99)
        #expect(report.dispatches.allSatisfy { $0.round_trip_us.min > 0 && $0.pairs >= $0.tokens })
    }

    /// The probe's checks can fail: a changed expected value, a wrong secret, an expert the
    /// worker does not hold and a wrong fingerprint are each reported, with exit status 1.
    @Test func probeReportsWhatIsWrong() throws {
        let fixture = "qwen3-moe-tiny"
        let token = try secretFile("probe-test-secret-\(UUID().uuidString)")
        let worker = try WorkerProcess(fixture: fixture, experts: "0-3", name: "half", extraArguments: ["--token-file", token])
        defer { worker.stop() }

        let casePath = try writeCase(fixture, arguments: ["--experts", "0-3"])
        #expect(try probe(worker, casePath: casePath, tokenFile: token).status == 0)

        // One expected value moved by 1e-3.
        var text = try String(contentsOfFile: casePath, encoding: .utf8)
        let expectedLine = try #require(text.range(of: "\nexpected "))
        let valueEnd = try #require(text[expectedLine.upperBound...].firstIndex(of: " "))
        let value = try #require(Float(text[expectedLine.upperBound..<valueEnd]))
        text.replaceSubrange(expectedLine.upperBound..<valueEnd, with: (value + 1e-3).description)
        let changed = directory.appendingPathComponent("changed.txt").path
        try text.write(toFile: changed, atomically: true, encoding: .utf8)
        let mismatch = try probe(worker, casePath: changed, tokenFile: token)
        #expect(mismatch.status == 1 && mismatch.stderr.contains("combine differs from the expected values"), "\(mismatch.stderr)")

        let wrongSecret = try probe(worker, casePath: casePath, tokenFile: secretFile("another-cluster-secret-0123", name: "other"))
        #expect(wrongSecret.status == 1 && wrongSecret.stderr.contains("UNAUTHENTICATED"), "\(wrongSecret.stderr)")

        let everyExpert = try writeCase(fixture)
        let notHosted = try probe(worker, casePath: everyExpert, tokenFile: token)
        #expect(notHosted.status == 1 && notHosted.stderr.contains("EXPERT_NOT_HOSTED"), "\(notHosted.stderr)")

        let otherModel = try writeCase("glm4-moe-tiny")
        let fingerprint = try probe(worker, casePath: otherModel, tokenFile: token)
        #expect(fingerprint.status == 1 && fingerprint.stderr.contains("MODEL_FINGERPRINT_MISMATCH"), "\(fingerprint.stderr)")

        let unreadable = try probe(worker, casePath: directory.appendingPathComponent("missing.txt").path, tokenFile: token)
        #expect(unreadable.status == 2 && unreadable.stderr.contains("cannot open the case file"))
    }

    /// The committed C code is what protoc-c generates from proto/ today.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["JINDOU_REQUIRE_PROBE"] == "1"
                    || FileManager.default.isExecutableFile(atPath: "/usr/bin/protoc-c"), "needs protoc-c (protobuf-c-compiler)"))
    func generatedCodeMatchesTheProto() throws {
        let build = Executable(url: URL(fileURLWithPath: Fixtures.repositoryRoot + "/tools/probe/build.sh"))
        let result = try build.run(["--check-generated"])
        #expect(result.status == 0, "tools/probe/generated differs from protoc-c's output for proto/: \(result.stdout.count) \(result.stderr)")
    }
}
