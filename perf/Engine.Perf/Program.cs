// Placeholder until the bandwidth benchmark lands.
return 0;
