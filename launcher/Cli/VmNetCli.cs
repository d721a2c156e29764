namespace VmNet.Cli;

public static class VmNetCli
{
    public static int Run(string[] args)
    {
        Console.WriteLine("vmnet 0.1.0");
        return 0;
    }
}
