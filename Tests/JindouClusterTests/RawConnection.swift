import Foundation
import JindouTransport
import JindouWire
import NIOCore

/// A plain blocking TCP client for feeding workers arbitrary bytes (fuzzing, malformed
/// frames) and reading back whatever frames they answer with.
final class RawConnection {
    private let fd: Int32
    private var buffer = ByteBuffer()
    private var decoder = FrameDecoder()

    init(_ endpoint: Endpoint, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(endpoint.host)
        address.sin_port = UInt16(endpoint.port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw HarnessError("cannot connect to \(endpoint)")
        }
        setReceiveTimeout(milliseconds: timeoutSeconds * 1000)
    }

    func setReceiveTimeout(milliseconds: Int) {
        var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends raw bytes; false if the peer has closed.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    @discardableResult
    func send(_ frame: Frame) throws -> Bool {
        let encoded = try FrameEncoder.encode(frame)
        return send(Array(encoded.readableBytesView))
    }

    /// Raw bytes from the peer: some, [] when it closed, nil when the receive timed out.
    func receiveBytes(max: Int = 65536) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: max)
        let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
        if n < 0 { return nil }
        return Array(bytes.prefix(n))
    }

    enum Reply {
        case frame(Frame)
        case closed
        case timedOut
    }

    /// The next frame from the peer, or how the wait ended.
    func receive() -> Reply {
        while true {
            do {
                if let frame = try decoder.decode(&buffer) { return .frame(frame) }
            } catch {
                return .closed
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return .closed }
            if count < 0 { return errno == EAGAIN || errno == EWOULDBLOCK ? .timedOut : .closed }
            buffer.writeBytes(chunk[0..<count])
        }
    }

    /// HELLO with `fingerprint`; returns the reply.
    func handshake(fingerprint: String) throws -> Reply {
        try send(HelloMessage(modelFingerprint: fingerprint, coordinatorName: "test").frame(requestID: 1))
        return receive()
    }
}
