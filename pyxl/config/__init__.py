"""Domain configuration files: libxlu's language (cfgfile) and xl's model of them."""
