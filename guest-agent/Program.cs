Console.WriteLine("vmnet-agent 0.1.0");
return 0;
