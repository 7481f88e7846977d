from loader.service import main

main()
