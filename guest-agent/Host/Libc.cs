using System.Runtime.InteropServices;

namespace VmNet.GuestAgent.Host;

/// <summary>Raw libc calls with their C names. glibc is the only thing the agent needs besides the kernel.</summary>
internal static unsafe partial class Libc
{
    private const string Library = "libc";

    public const int SOCK_CLOEXEC = 0x80000;
    public const int AF_PACKET = 17;
    public const int SOCK_DGRAM = 2;
    public const ushort ETH_P_IP = 0x0800;
    public const short POLLIN = 1;
    public const int EINTR = 4;
    public const int O_RDWR = 2;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;
    public const int EAGAIN = 11;
    public const int EBUSY = 16;

    [LibraryImport(Library, EntryPoint = "socket", SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    [LibraryImport(Library, EntryPoint = "bind", SetLastError = true)]
    public static partial int bind(int fd, byte* address, int length);

    [LibraryImport(Library, EntryPoint = "sendto", SetLastError = true)]
    public static partial nint sendto(int fd, byte* buffer, nint length, int flags, byte* address, int addressLength);

    [LibraryImport(Library, EntryPoint = "recvfrom", SetLastError = true)]
    public static partial nint recvfrom(int fd, byte* buffer, nint length, int flags, byte* address, int* addressLength);

    [LibraryImport(Library, EntryPoint = "poll", SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint count, int timeoutMs);

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd { public int Fd; public short Events; public short Revents; }

    [LibraryImport(Library, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int open(string path, int flags);

    [LibraryImport(Library, EntryPoint = "read", SetLastError = true)]
    public static partial nint read(int fd, byte* buffer, nint length);

    [LibraryImport(Library, EntryPoint = "write", SetLastError = true)]
    public static partial nint write(int fd, byte* buffer, nint length);

    [LibraryImport(Library, EntryPoint = "close", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Library, EntryPoint = "strerror")]
    private static partial nint strerror(int errnum);

    public static string Describe(int errno) => $"{Marshal.PtrToStringUTF8(strerror(errno))} (errno {errno})";
}
