import Foundation
import JindouCoordinator
import JindouModel
import JindouTestSupport
import JindouTransport
import Logging
import Testing

/// A `jindoud worker` child process on loopback.
final class WorkerProcess: @unchecked Sendable {
    // @unchecked: fields are set once in init; Process is only signalled and waited on.
    let process: Process
    let endpoint: Endpoint
    let name: String

    /// Starts a worker and waits for its `ready tcp://host:port` line. `launcher` runs it
    /// through another command (e.g. `cluster.sh exec I` to start it in a network namespace).
    init(fixture: String, experts: String? = "all", name: String, host: String = "127.0.0.1", port: Int = 0,
         extraArguments: [String] = [], launcher: [String] = []) throws {
        let jindoud = try Executable("jindoud")
        let arguments = ["worker", "--model", Fixtures.path(fixture), "--listen", "\(host):\(port)", "--name", name,
                         "--log-level", "error"] + (experts.map { ["--experts", $0] } ?? []) + extraArguments
        process = Process()
        if launcher.isEmpty {
            process.executableURL = jindoud.url
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: launcher[0])
            process.arguments = Array(launcher.dropFirst()) + [jindoud.url.path] + arguments
        }
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        self.name = name
        guard let line = readLine(stdout.fileHandleForReading), (line.hasPrefix("ready tcp://") || line.hasPrefix("ready tls://")),
              let endpoint = Endpoint(String(line.dropFirst("ready ".count))) else {
            process.terminate()
            throw HarnessError("worker \(name) did not become ready")
        }
        self.endpoint = endpoint
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func kill(_ signal: Int32 = SIGKILL) {
        Foundation.kill(pid, signal)
        process.waitUntilExit()
    }

    func stop() {
        if process.isRunning { kill(SIGTERM) }
    }

    /// Bytes of `file` mapped into this worker's address space (from /proc/PID/maps).
    func mappedBytes(of file: String) throws -> Int {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/\(pid)/maps"))
        defer { try? handle.close() }
        let maps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
        var total = 0
        for line in maps.split(separator: "\n") where line.hasSuffix(file) {
            let range = line.split(separator: " ")[0].split(separator: "-")
            total += Int(range[1], radix: 16)! - Int(range[0], radix: 16)!
        }
        return total
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Reads one line from a pipe (blocking); nil at end of file.
func readLine(_ handle: FileHandle) -> String? {
    var bytes: [UInt8] = []
    while true {
        let chunk = handle.readData(ofLength: 1)
        if chunk.isEmpty { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
        if chunk.first == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(contentsOf: chunk)
    }
}

/// A quiet logger for in-process coordinators.
let testLogger: Logger = {
    var logger = Logger(label: "jindou.test")
    logger.logLevel = .critical
    return logger
}()

/// A free TCP port on loopback (bound and released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard bound == 0 else { throw HarnessError("bind failed") }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A `jindoud coordinator` child process.
final class CoordinatorProcess: @unchecked Sendable {
    // @unchecked: set once in init; the Process is only signalled and waited on.
    let process: Process
    let url: String

    init(fixture: String, port: Int = 0, arguments: [String]) throws {
        let jindoud = try Executable("jindoud")
        process = Process()
        process.executableURL = jindoud.url
        process.arguments = ["coordinator", "--model", Fixtures.path(fixture), "--listen", "127.0.0.1:\(port)",
                             "--log-level", "error"] + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        guard let line = readLine(stdout.fileHandleForReading), line.hasPrefix("ready http") else {
            process.terminate()
            throw HarnessError("coordinator did not become ready")
        }
        url = String(line.dropFirst("ready ".count))
    }

    var isRunning: Bool { process.isRunning }

    func kill(_ signal: Int32 = SIGKILL) {
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    func stop() { if process.isRunning { kill(SIGTERM) } }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(_ timeout: Duration = .seconds(20), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw HarnessError("timed out waiting for: \(what)")
}

/// Every golden case of `fixture` through `cluster`: prompt logits within 1e-5 of the
/// single-process engine's at every position, and transformers' greedy tokens.
func expectGoldenCasesMatch(_ cluster: InferenceEngine, fixture: String) async throws {
    let single = try await EngineCache.shared.engine(fixture)
    let (golden, _) = try GoldenSet(fixture: fixture, stem: "golden").load()
    for c in golden.cases {
        let expected = try await single.promptLogits(c.promptIDs, expertsPerToken: c.experts)
        let actual = try await cluster.promptLogits(c.promptIDs, expertsPerToken: c.experts)
        for (position, (a, e)) in zip(actual, expected).enumerated() {
            #expect(maxAbsDifference(a, e) <= 1e-5, "\(fixture) case \(c.name) position \(position)")
        }
        let request = GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens,
                                        expertsPerToken: c.experts, stopTokenIDs: [])
        #expect(try await cluster.generate(request).tokenIDs == c.greedyNewTokens, "\(fixture) case \(c.name)")
    }
}

/// A Python that can import `modules` (comma-separated): JINDOU_PYTHON if set, else python3.
func pythonImporting(_ modules: String) -> String? {
    let candidates = [ProcessInfo.processInfo.environment["JINDOU_PYTHON"], "/usr/bin/python3", "/usr/local/bin/python3"].compactMap { $0 }
    for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: candidate)
        check.arguments = ["-c", "import \(modules)"]
        check.standardError = FileHandle.nullDevice
        try? check.run()
        check.waitUntilExit()
        if check.terminationStatus == 0 { return candidate }
    }
    return nil
}
