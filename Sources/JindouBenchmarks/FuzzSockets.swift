import Foundation
import JindouTransport
import JindouWire
import NIOCore

/// A listening loopback socket (one fake worker).
final class Listener: @unchecked Sendable {
    // @unchecked: the descriptor is set once and only used by one accepting thread.
    let endpoint: Endpoint
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            Glibc.close(fd)
            throw BenchmarkError("cannot listen on loopback")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        endpoint = Endpoint(host: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port)))
    }

    /// The next connection, or nil if none arrived within the timeout.
    func accept(timeoutSeconds: Int) -> FuzzSocket? {
        var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&poll, 1, Int32(timeoutSeconds * 1000)) > 0 else { return nil }
        let connection = Glibc.accept(fd, nil, nil)
        return connection >= 0 ? FuzzSocket(descriptor: connection, timeoutSeconds: 5) : nil
    }

    func close() { Glibc.close(fd) }
}

/// A blocking TCP connection for the fuzzers: sends arbitrary bytes, reads frames (judging
/// them) or raw bytes.
final class FuzzSocket {
    private let fd: Int32
    private var buffer = ByteBuffer()
    private var decoder = FrameDecoder()
    private let timeoutSeconds: Int

    init(descriptor: Int32, timeoutSeconds: Int) {
        fd = descriptor
        self.timeoutSeconds = timeoutSeconds
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    convenience init?(connectingTo endpoint: Endpoint, timeoutSeconds: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(endpoint.host)
        address.sin_port = UInt16(endpoint.port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        self.init(descriptor: fd, timeoutSeconds: timeoutSeconds)
    }

    deinit { close(fd) }

    /// False once the peer stops taking bytes (closed, reset, or not reading for the timeout).
    func send(_ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    func send(_ bytes: [UInt8]) -> Bool { send(bytes[...]) }

    func halfClose() { shutdown(fd, Int32(SHUT_WR)) }

    /// Every byte until the peer closes; `ended` is false if it had not closed within the timeout.
    func receiveUntilClosed() -> (bytes: [UInt8], ended: Bool) {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(timeoutSeconds)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return (received, true) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return (received, false) }
                return (received, true)  // reset: the peer closed
            }
            received += chunk[0..<count]
        }
        return (received, false)
    }

    /// Everything until the peer closes (or the receive timeout).
    func readAll() -> [UInt8] { receiveUntilClosed().bytes }

    /// Sends a frame and returns the next frame back.
    func exchange(_ frame: Frame) throws -> Frame {
        let encoded = try FrameEncoder.encode(frame)
        guard send(Array(encoded.readableBytesView)) else { throw BenchmarkError("the peer closed the connection") }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let frame = try decoder.decode(&buffer) { return frame }
            } catch {
                throw BenchmarkError("bad reply: \(error.error)")
            }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { throw BenchmarkError(count == 0 ? "the peer closed the connection" : "no reply within \(timeoutSeconds) s") }
            buffer.writeBytes(chunk[0..<count])
        }
    }

    /// The coordinator's next frame; bytes that are not a frame count as undefined.
    func readFrame(into report: inout CoordinatorFuzzer.Report) -> Frame? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let frame = try decoder.decode(&buffer) {
                    report.coordinatorFrames["\(frame.kind)", default: 0] += 1
                    return frame
                }
            } catch {
                report.undefinedFrames += 1
                if report.undefinedExamples.count < 10 { report.undefinedExamples.append("\(error.error)") }
                return nil
            }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return nil }
            buffer.writeBytes(chunk[0..<count])
        }
    }

    /// Reads and judges frames until the coordinator closes or `milliseconds` pass (a link it
    /// accepted keeps carrying PINGs; closing it makes the coordinator dial again).
    func drain(into report: inout CoordinatorFuzzer.Report, milliseconds: Int) {
        var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let deadline = ContinuousClock.now + .milliseconds(milliseconds)
        while ContinuousClock.now < deadline, readFrame(into: &report) != nil {}
    }
}
